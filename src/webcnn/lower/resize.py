"""Resize (opset 11+) and Upsample: nearest, (bi)linear and (bi)cubic over H and W."""
from __future__ import annotations

import fractions
import math

import numpy as np

from ..errors import UnsupportedError
from . import register
from .core import float_literal, inv_size, texel, weight_from_texels

RESIZE_ATTRS = ["mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside",
                "extrapolation_value", "antialias", "axes", "keep_aspect_ratio_policy"]
# x_original from the output coordinate {o}; the constants come from _axis_constants.
TRANSFORMS = {
    "half_pixel": "(float({o}) + 0.5) / {s} - 0.5",
    "half_pixel_symmetric": "{offset} + (float({o}) + 0.5) / {s} - 0.5",
    "pytorch_half_pixel": "(float({o}) + 0.5) / {s} - 0.5",
    "align_corners": "float({o}) * {ratio}",
    "asymmetric": "float({o}) / {s}",
    "tf_half_pixel_for_nn": "(float({o}) + 0.5) / {s}",
    "tf_crop_and_resize": "{offset} + float({o}) * {ratio}",
}
NEAREST = {
    "round_prefer_floor": "int(ceil({c} - 0.5))",
    "round_prefer_ceil": "int(floor({c} + 0.5))",
    "floor": "int(floor({c}))",
    "ceil": "int(ceil({c}))",
}


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _axis_constants(transform, n_in, n_out, scale, roi):
    """Compile-time constants of one axis. length_resized, in align_corners and tf_crop_and_resize, is the output's
    length n_out, as in onnxruntime and PyTorch (x1.5 of 7 rows: 10, not 10.5; ONNX's reference takes scale * n_in)."""
    length = scale * n_in
    consts = {"s": float_literal(scale), "offset": "0.0", "ratio": "0.0"}
    if transform == "half_pixel_symmetric":
        consts["offset"] = float_literal(n_in / 2 * (1 - n_out / length))
    elif transform == "align_corners" and n_out != 1:
        consts["ratio"] = float_literal((n_in - 1) / (n_out - 1))
    elif transform == "tf_crop_and_resize":
        start, end = roi
        length = n_out
        if length == 1:
            consts["offset"] = float_literal((end - start) * (n_in - 1) / 2 + start * (n_in - 1))
        else:
            consts["offset"] = float_literal(start * (n_in - 1))
            consts["ratio"] = float_literal((end - start) * (n_in - 1) / (length - 1))
    elif transform == "pytorch_half_pixel" and n_out == 1:
        return "-0.5", consts
    return TRANSFORMS[transform], consts


def _per_axis(values, axes, fill):
    """Spread a scales/sizes/roi-half vector given for `axes` (default: all four) over the 4 NCHW axes."""
    full = list(fill)
    for a, value in zip(axes if axes is not None else range(4), values):
        full[a % 4] = float(value)
    return full


@register("Resize", "Upsample", attrs=RESIZE_ATTRS)
def lower_resize(lw, node):
    g = lw.g
    x_shape, out_shape = g.shape(node.inputs[0]), g.shape(node.outputs[0])
    if len(x_shape) != 4 or x_shape[:2] != out_shape[:2]:
        raise UnsupportedError(node, f"resizing {list(x_shape)} to {list(out_shape)}",
                               "resizing the H and W axes of an NCHW tensor")
    mode = _text(node.attrs.get("mode", "nearest"))
    in_hw = [float(d) for d in x_shape]
    roi = [(0.0, 1.0)] * 4
    from_sizes = False
    if node.op == "Upsample":
        transform, nearest_mode = "asymmetric", "floor"
        scales = g.const(node.inputs[1]) if len(node.inputs) > 1 else np.array(node.attrs.get("scales"))
        if scales is None:
            raise UnsupportedError(node, "scales is a computed tensor", "constant scales")
        scales = [float(v) for v in scales.reshape(-1)]
    else:
        transform = _text(node.attrs.get("coordinate_transformation_mode", "half_pixel"))
        nearest_mode = _text(node.attrs.get("nearest_mode", "round_prefer_floor"))
        if node.attrs.get("antialias", 0):
            raise UnsupportedError(node, "antialias=1", "antialias=0")
        axes = node.attrs.get("axes")
        consts = [g.const(n) if n else None for n in (list(node.inputs[1:4]) + ["", "", ""])[:3]]
        if any(c is None and n for c, n in zip(consts, node.inputs[1:4])):
            raise UnsupportedError(node, "roi, scales or sizes is a computed tensor", "constant roi, scales and sizes")
        roi_in, scales_in, sizes_in = (c.reshape(-1) if c is not None and c.size else None for c in consts)
        if scales_in is not None:
            scales = _per_axis(scales_in, axes, [1.0] * 4)
        else:
            scales = [o / i for o, i in zip(out_shape, x_shape)]
            policy = _text(node.attrs.get("keep_aspect_ratio_policy", "stretch"))
            from_sizes = policy == "stretch"
            if policy != "stretch":
                # One scale for every resized axis: the largest that fits (not_larger) or the smallest that covers.
                resized = [a % 4 for a in axes] if axes is not None else list(range(4))
                ratios = [_per_axis(sizes_in, axes, x_shape)[a] / x_shape[a] for a in resized]
                scale = min(ratios) if policy == "not_larger" else max(ratios)
                scales = [scale if a in resized else 1.0 for a in range(4)]
        if transform == "tf_crop_and_resize" and roi_in is not None:
            n = len(roi_in) // 2
            starts, ends = _per_axis(roi_in[:n], axes, [0.0] * 4), _per_axis(roi_in[n:], axes, [1.0] * 4)
            roi = list(zip(starts, ends))
    if mode not in ("nearest", "linear", "bilinear", "cubic"):
        raise UnsupportedError(node, f"mode='{mode}'", "nearest, linear, cubic")
    if transform not in TRANSFORMS:
        raise UnsupportedError(node, f"coordinate_transformation_mode='{transform}'", ", ".join(TRANSFORMS))
    if mode == "nearest" and nearest_mode not in NEAREST:
        raise UnsupportedError(node, f"nearest_mode='{nearest_mode}'", ", ".join(NEAREST))
    x = lw.view(node, node.inputs[0])
    out = lw.output_view(node.outputs[0])
    if (mode in ("linear", "bilinear") and transform in ("half_pixel", "pytorch_half_pixel", "asymmetric")
            and _phased_linear(lw, node, x, out, transform, scales, in_hw, out_shape)):
        return
    table = _nearest_table(transform, nearest_mode, x, out_shape, scales, from_sizes) if mode == "nearest" else None
    if table is not None:
        # The source row (lane 0) and column (lane 1) of every output row and column, as onnxruntime picks them.
        w = lw.add_weight(weight_from_texels(node.name + "/nearest", table, lw.max_size))
        inv = inv_size(w)
        body = (f"  int iy = int({texel('u_nn', inv, 'oy', '0')}.x);\n"
                f"  int ix = int({texel('u_nn', inv, 'ox', '0')}.y);\n  v = X(t, iy, ix);\n")
        lw.emit(node, body, {"X": x}, out, 1.0, samplers=[("u_nn", w)])
        return
    body = ""
    for axis, c, o in ((2, "cy", "oy"), (3, "cx", "ox")):
        template, consts = _axis_constants(transform, in_hw[axis], out_shape[axis], scales[axis], roi[axis])
        body += f"  float {c} = {template.format(o=o, **consts)};\n"
    if mode == "nearest":
        rnd = NEAREST[nearest_mode]
        body += (f"  int iy = clamp({rnd.format(c='cy')}, 0, {x.height - 1});\n"
                 f"  int ix = clamp({rnd.format(c='cx')}, 0, {x.width - 1});\n"
                 "  v = X(t, iy, ix);\n")
        flops = 1.0
    elif mode == "cubic":
        body += _cubic(node, x)
        flops = 4.0 * 16 + 40
    else:
        body += (f"  float fy = clamp(cy, 0.0, {float(x.height - 1)});\n"
                 f"  float fx = clamp(cx, 0.0, {float(x.width - 1)});\n"
                 "  int y0 = int(floor(fy)); int x0 = int(floor(fx));\n"
                 f"  int y1 = min(y0 + 1, {x.height - 1}); int x1 = min(x0 + 1, {x.width - 1});\n"
                 "  float wy = fy - float(y0); float wx = fx - float(x0);\n"
                 "  v = mix(mix(X(t, y0, x0), X(t, y0, x1), wx), mix(X(t, y1, x0), X(t, y1, x1), wx), wy);\n")
        flops = 24.0
    if transform == "tf_crop_and_resize":
        # TF's CropAndResize: samples outside the input take the extrapolation value.
        fill = float_literal(node.attrs.get("extrapolation_value", 0.0))
        body += (f"  if (cy < 0.0 || cy > {float(x.height - 1)} || cx < 0.0 || cx > {float(x.width - 1)}) "
                 f"v = vec4({fill});\n")
    lw.emit(node, body, {"X": x}, out, flops)


def _cubic(node, x) -> str:
    """Keys' cubic convolution over the 4 x 4 samples around (cy, cx), as ONNX and onnxruntime define it: samples
    past the edge repeat the edge, or with exclude_outside drop out and the other weights are renormalised."""
    a = float_literal(node.attrs.get("cubic_coeff_a", -0.75))
    exclude = node.attrs.get("exclude_outside", 0)
    body = ""
    for c, n in (("y", x.height), ("x", x.width)):
        # weights of the samples at floor - 1 .. floor + 2, for the fraction t: W(1 + t), W(t), W(1 - t), W(2 - t)
        body += (f"  float f{c} = floor(c{c}); int {c}0 = int(f{c}) - 1; float t{c} = c{c} - f{c};\n"
                 f"  vec4 d{c} = vec4(1.0 + t{c}, t{c}, 1.0 - t{c}, 2.0 - t{c});\n"
                 f"  vec4 w{c} = mix((({a} * d{c} - 5.0 * {a}) * d{c} + 8.0 * {a}) * d{c} - 4.0 * {a},\n"
                 f"      (({a} + 2.0) * d{c} - ({a} + 3.0)) * d{c} * d{c} + 1.0, lessThanEqual(d{c}, vec4(1.0)));\n")
        if exclude:
            body += (f"  for (int i = 0; i < 4; ++i) if ({c}0 + i < 0 || {c}0 + i > {n - 1}) w{c}[i] = 0.0;\n"
                     f"  w{c} /= dot(w{c}, vec4(1.0));\n")
    cols = [f"X(t, iy, clamp(x0 + {j}, 0, {x.width - 1}))" for j in range(4)]
    body += ("  v = vec4(0.0);\n  for (int i = 0; i < 4; ++i) {\n"
             f"    int iy = clamp(y0 + i, 0, {x.height - 1});\n"
             f"    v += wy[i] * (wx.x * {cols[0]} + wx.y * {cols[1]}\n"
             f"                  + wx.z * {cols[2]} + wx.w * {cols[3]});\n  }}\n")
    return body


def _nearest_table(transform, nearest_mode, x, out_shape, scales, from_sizes):
    """Nearest resizing picks a pixel by rounding a coordinate: where an exact coordinate lies on (or within float
    error of) a rounding boundary, as x1.7 puts output column 17 at 17 / 1.7 = 10, the GPU's inexact division may land
    on the other side. Then return the source indices, computed in float32 in onnxruntime's order of operations
    (which PyTorch's match), as texels [1, max(H, W), 4]: lane 0 rows, lane 1 columns. None where the shader's
    arithmetic is exact (factors that are powers of two) or no coordinate is near a boundary."""
    if transform not in ("asymmetric", "half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "align_corners"):
        return None
    f32, half = np.float32, np.float32(0.5)
    tables, fragile = [], False
    for axis, n_in in ((2, x.height), (3, x.width)):
        n_out, s = out_shape[axis], f32(scales[axis])
        o = np.arange(n_out, dtype=np.float32)
        if transform == "align_corners":
            ratio = fractions.Fraction(n_in - 1, max(n_out - 1, 1))
            c32 = o * f32(n_in - 1) / f32(max(n_out - 1, 1))
            c64 = o.astype(np.float64) * float(ratio)
            exact = ratio.denominator & (ratio.denominator - 1) == 0   # o * ratio is exact in float32
        else:
            shift = 0.0 if transform == "asymmetric" else 0.5
            sub = 0.5 if transform in ("half_pixel", "pytorch_half_pixel") else 0.0
            c32 = (o + f32(shift)) / s - f32(sub)
            c64 = (o.astype(np.float64) + shift) / float(s) - sub
            if from_sizes and transform == "asymmetric":   # onnxruntime is exact there: o * n_in / n_out
                c32 = o.astype(np.float64) * n_in / n_out
            if transform == "pytorch_half_pixel" and n_out == 1:
                c32, c64 = np.zeros(1, np.float32), np.zeros(1)
            exact = float(s) > 0 and math.log2(float(s)).is_integer()   # dividing by 2^k is exact
        # the boundaries are integers for floor and ceil, half-integers for the two roundings
        offset = 0.5 if nearest_mode.startswith("round") else 0.0
        gap = np.abs((c64 - offset) - np.round(c64 - offset))
        fragile = fragile or (not exact and bool(np.any(gap <= 1e-4 * np.maximum(1.0, np.abs(c64)))))
        low = np.floor(c32)
        frac = c32 - low   # exact, unlike c32 +- 0.5 in float32
        if nearest_mode == "round_prefer_floor":
            index = low + (frac > half)
        elif nearest_mode == "round_prefer_ceil":
            index = low + (frac >= half)
        else:
            index = low if nearest_mode == "floor" else np.ceil(c32)
        tables.append(np.clip(index, 0, n_in - 1))
    if not fragile:
        return None
    texels = np.zeros((1, max(len(t) for t in tables), 4), np.float32)
    texels[0, :len(tables[0]), 0] = tables[0]
    texels[0, :len(tables[1]), 1] = tables[1]
    return texels


def _phased_linear(lw, node, x, out, transform, scales, in_hw, out_shape) -> bool:
    """Linear resize by an integer factor f dividing the output's P phases: the P pixels of a fragment read only
    P / f + 2 input columns, at column weights known at compile time, so each input texel is fetched once per
    fragment (2 (P / f + 2) fetches, not 4P). Clamping the column index, not the coordinate, gives the same values
    at the edges: both neighbours then clamp to the same column."""
    P, f = out.parts[0].phases, scales[3]
    if P == 1 or f != int(f) or P % int(f) or (transform == "pytorch_half_pixel" and out_shape[3] == 1):
        return False
    f = int(f)
    shift = 0.0 if transform == "asymmetric" else 0.5 / f - 0.5   # cx = (x0 + j) / f + shift
    cols = {}
    for j in range(P):
        c = j / f + shift
        lo = int(np.floor(c))
        cols[j] = (lo, c - lo)
    used = sorted({u for lo, _ in cols.values() for u in (lo, lo + 1)})
    template, consts = _axis_constants(transform, in_hw[2], out_shape[2], scales[2], (0.0, 1.0))
    body = (f"  float fy = clamp({template.format(o='oy', **consts)}, 0.0, {float(x.height - 1)});\n"
            f"  int y0 = int(floor(fy)); int y1 = min(y0 + 1, {x.height - 1}); float wy = fy - float(y0);\n"
            f"  int b = x0 / {f};\n")
    for u in used:
        n = f"{u}" if u >= 0 else f"m{-u}"
        body += (f"  int ix{n} = clamp(b + {u}, 0, {x.width - 1});\n"
                 f"  vec4 c{n} = mix(X(t, y0, ix{n}), X(t, y1, ix{n}), wy);\n")
    for j, (lo, w) in cols.items():
        a, c = (f"{lo}" if lo >= 0 else f"m{-lo}"), (f"{lo + 1}" if lo + 1 >= 0 else f"m{-lo - 1}")
        body += f"  vec4 v{j} = mix(c{a}, c{c}, {float_literal(w)});\n"
    lw.emit(node, body, {"X": x}, out, 24.0, phased_body=True)
    lw.passes[-1].op = f"Resize:linearx{P}"
    return True
