"""Resize (opset 11+) and Upsample: nearest and (bi)linear over H and W."""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from . import register
from .core import float_literal

RESIZE_ATTRS = ["mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside",
                "extrapolation_value", "antialias", "axes", "keep_aspect_ratio_policy"]
TRANSFORMS = {
    "half_pixel": "(float({o}) + 0.5) / {s} - 0.5",
    "pytorch_half_pixel": "({n_out} > 1 ? (float({o}) + 0.5) / {s} - 0.5 : 0.0)",
    "align_corners": "({n_out} > 1 ? float({o}) * {ratio} : 0.0)",
    "asymmetric": "float({o}) / {s}",
    "tf_half_pixel_for_nn": "(float({o}) + 0.5) / {s}",
}
NEAREST = {
    "round_prefer_floor": "int(ceil({c} - 0.5))",
    "round_prefer_ceil": "int(floor({c} + 0.5))",
    "floor": "int(floor({c}))",
    "ceil": "int(ceil({c}))",
}


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


@register("Resize", "Upsample", attrs=RESIZE_ATTRS)
def lower_resize(lw, node):
    g = lw.g
    x_shape, out_shape = g.shape(node.inputs[0]), g.shape(node.outputs[0])
    if len(x_shape) != 4 or x_shape[:2] != out_shape[:2]:
        raise UnsupportedError(node, f"resizing {list(x_shape)} to {list(out_shape)}",
                               "resizing the H and W axes of an NCHW tensor")
    mode = _text(node.attrs.get("mode", "nearest"))
    if node.op == "Upsample":
        transform, nearest_mode = "asymmetric", "floor"
        scales = g.const(node.inputs[1]) if len(node.inputs) > 1 else np.array(node.attrs.get("scales"))
    else:
        transform = _text(node.attrs.get("coordinate_transformation_mode", "half_pixel"))
        nearest_mode = _text(node.attrs.get("nearest_mode", "round_prefer_floor"))
        scales = g.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if node.attrs.get("antialias", 0):
            raise UnsupportedError(node, "antialias=1", "antialias=0")
        policy = _text(node.attrs.get("keep_aspect_ratio_policy", "stretch"))
        if policy != "stretch" and not (scales is not None and scales.size):
            raise UnsupportedError(node, f"keep_aspect_ratio_policy='{policy}'", "stretch")
        axes = node.attrs.get("axes")
        if axes is not None and scales is not None and scales.size:
            full = np.ones(4, np.float32)
            for a, sc in zip(axes, scales):
                full[a % 4] = sc
            scales = full
    if mode not in ("nearest", "linear", "bilinear"):
        raise UnsupportedError(node, f"mode='{mode}'", "nearest, linear")
    if transform not in TRANSFORMS:
        raise UnsupportedError(node, f"coordinate_transformation_mode='{transform}'", ", ".join(TRANSFORMS))
    if mode == "nearest" and nearest_mode not in NEAREST:
        raise UnsupportedError(node, f"nearest_mode='{nearest_mode}'", ", ".join(NEAREST))
    x = lw.view(node, node.inputs[0])
    out = lw.output_view(node.outputs[0])
    coords = {}
    for axis, (o, n_in, n_out) in {"y": ("oy", x.height, out.height), "x": ("ox", x.width, out.width)}.items():
        scale = float(scales[2 if axis == "y" else 3]) if scales is not None and scales.size else n_out / n_in
        ratio = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        coords[axis] = TRANSFORMS[transform].format(o=o, s=float_literal(scale), n_out=n_out,
                                                     ratio=float_literal(ratio))
    if mode == "nearest":
        rnd = NEAREST[nearest_mode]
        body = (f"  int iy = clamp({rnd.format(c=coords['y'])}, 0, {x.height - 1});\n"
                f"  int ix = clamp({rnd.format(c=coords['x'])}, 0, {x.width - 1});\n"
                "  v = X(t, iy, ix);\n")
        flops = 1.0
    else:
        body = (f"  float fy = clamp({coords['y']}, 0.0, {float(x.height - 1)});\n"
                f"  float fx = clamp({coords['x']}, 0.0, {float(x.width - 1)});\n"
                "  int y0 = int(floor(fy)); int x0 = int(floor(fx));\n"
                f"  int y1 = min(y0 + 1, {x.height - 1}); int x1 = min(x0 + 1, {x.width - 1});\n"
                "  float wy = fy - float(y0); float wx = fx - float(x0);\n"
                "  v = mix(mix(X(t, y0, x0), X(t, y0, x1), wx), mix(X(t, y1, x0), X(t, y1, x1), wx), wy);\n")
        flops = 24.0
    lw.emit(node, body, {"X": x}, out, flops)
