"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, and mean/max/min/sum over the channels."""
from __future__ import annotations

from ..errors import UnsupportedError
from . import register
from .core import live_lanes

POOL_ATTRS = ["auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides", "count_include_pad",
              "storage_order"]


def _window_origin(lw, node, x, out, kernel, strides, dilations):
    mode = node.attrs.get("auto_pad", "NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode in ("NOTSET", "VALID"):
        pads = node.attrs.get("pads", [0, 0, 0, 0]) if mode == "NOTSET" else [0, 0, 0, 0]
        return pads
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise UnsupportedError(node, f"auto_pad='{mode}'", "NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    pads = [0, 0, 0, 0]
    for i, (n_in, n_out) in enumerate(((x.height, out.height), (x.width, out.width))):
        extent = (kernel[i] - 1) * dilations[i] + 1
        total = max((n_out - 1) * strides[i] + extent - n_in, 0)
        begin = total - total // 2 if mode == "SAME_LOWER" else total // 2
        pads[i], pads[i + 2] = begin, total - begin
    return pads


@register("MaxPool", "AveragePool", attrs=POOL_ATTRS)
def lower_pool(lw, node):
    g = lw.g
    if len(g.shape(node.inputs[0])) != 4:
        raise UnsupportedError(node, f"input of rank {len(g.shape(node.inputs[0]))}", "2-D pooling on NCHW input")
    if len(node.outputs) > 1 and node.outputs[1] and (g.consumers(node.outputs[1]) or node.outputs[1] in g.outputs):
        raise UnsupportedError(node, "the Indices output is used", "MaxPool with only its values used")
    x = lw.view(node, node.inputs[0])
    out = lw.output_view(node.outputs[0])
    kernel = node.attrs["kernel_shape"]
    strides = node.attrs.get("strides", [1, 1])
    dilations = node.attrs.get("dilations", [1, 1])
    pt, pl, pb, pr = _window_origin(lw, node, x, out, kernel, strides, dilations)
    is_max = node.op == "MaxPool"
    head = (f"  int y0 = oy * {strides[0]} - {pt}; int x0 = ox * {strides[1]} - {pl};\n"
            + ("  vec4 acc = vec4(-3.4e38);\n" if is_max else "  vec4 acc = vec4(0.0); float n = 0.0;\n")
            + f"  for (int ky = 0; ky < {kernel[0]}; ++ky) {{\n"
              f"    int iy = y0 + ky * {dilations[0]};\n"
              f"    for (int kx = 0; kx < {kernel[1]}; ++kx) {{\n"
              f"      int ix = x0 + kx * {dilations[1]};\n")
    if is_max:
        body = head + (f"      if (iy < 0 || iy >= {x.height} || ix < 0 || ix >= {x.width}) continue;\n"
                       "      acc = max(acc, X(t, iy, ix));\n    }\n  }\n  v = acc;\n")
    else:
        # count_include_pad counts explicit padding, never the overhang that ceil_mode adds.
        counted = (f"iy >= -{pt} && iy < {x.height + pb} && ix >= -{pl} && ix < {x.width + pr}"
                   if node.attrs.get("count_include_pad", 0) else
                   f"iy >= 0 && iy < {x.height} && ix >= 0 && ix < {x.width}")
        body = head + (f"      if ({counted}) n += 1.0;\n"
                       f"      if (iy < 0 || iy >= {x.height} || ix < 0 || ix >= {x.width}) continue;\n"
                       "      acc += X(t, iy, ix);\n    }\n  }\n  v = acc / max(n, 1.0);\n")
    lw.emit(node, body, {"X": x}, out, 4.0 * kernel[0] * kernel[1])


@register("GlobalAveragePool", "GlobalMaxPool", attrs=[])
def lower_global_pool(lw, node):
    if len(lw.g.shape(node.inputs[0])) != 4:
        raise UnsupportedError(node, "input is not NCHW", "NCHW input")
    x = lw.view(node, node.inputs[0])
    out = lw.output_view(node.outputs[0])
    is_max = node.op == "GlobalMaxPool"
    body = (("  vec4 acc = vec4(-3.4e38);\n" if is_max else "  vec4 acc = vec4(0.0);\n")
            + f"  for (int iy = 0; iy < {x.height}; ++iy) {{\n    for (int ix = 0; ix < {x.width}; ++ix) {{\n"
            + ("      acc = max(acc, X(t, iy, ix));\n" if is_max else "      acc += X(t, iy, ix);\n")
            + "    }\n  }\n" + ("  v = acc;\n" if is_max else f"  v = acc / {float(x.height * x.width)};\n"))
    lw.emit(node, body, {"X": x}, out, 4.0 * x.height * x.width)


# Reduce* as a running vec4 accumulator: its start value and its step with the next value `a`.
REDUCE_INIT = {"ReduceMax": "-3.4e38", "ReduceMin": "3.4e38"}
REDUCE_STEP = {"ReduceMax": "max(acc, a)", "ReduceMin": "min(acc, a)", "ReduceL2": "acc + a * a"}


@register("ChannelReduce", attrs=["reduce", "last"])
def lower_channel_reduce(lw, node):
    """ReduceMean/Max/Min/Sum/L2 and ArgMax/ArgMin over the channel axis (optimize turns them into this): one
    channel out."""
    x = lw.view(node, node.inputs[0])
    out = lw.output_view(node.outputs[0])
    kind = node.attrs["reduce"]
    if kind in ("ArgMax", "ArgMin"):
        return _channel_arg(lw, node, x, out, kind == "ArgMax", node.attrs.get("last", 0))
    init, step = REDUCE_INIT.get(kind, "0.0"), REDUCE_STEP.get(kind, "acc + a")
    body = f"  vec4 acc = vec4({init});\n  for (int s = 0; s < {x.slices}; ++s) {{\n    vec4 a = X(s, oy, ox);\n"
    if x.channels % 4:   # the last slice's padding lanes must not count
        body += f"    if (s == {x.slices - 1}) a = mix(vec4({init}), a, {live_lanes(x.channels)});\n"
    body += f"    acc = {step};\n  }}\n"
    if kind in ("ReduceMax", "ReduceMin"):
        fn = "max" if kind == "ReduceMax" else "min"
        body += f"  v = vec4({fn}({fn}(acc.x, acc.y), {fn}(acc.z, acc.w)));\n"
    elif kind == "ReduceL2":   # F.normalize's norm
        body += "  v = vec4(sqrt(dot(acc, vec4(1.0))));\n"
    else:
        scale = f" / {float(x.channels)}" if kind == "ReduceMean" else ""
        body += f"  v = vec4(dot(acc, vec4(1.0)){scale});\n"
    lw.emit(node, body, {"X": x}, out, 4.0 * x.slices)


@register("SpatialReduce", attrs=["reduce", "rows", "cols"])
def lower_spatial_reduce(lw, node):
    """ReduceMean/Max/Min/Sum/L2 along the texture's rows, columns or both (optimize turns H-only, W-only and
    token reductions into this); each lane is its own channel."""
    x = lw.view(node, node.inputs[0])
    out = lw.output_view(node.outputs[0])
    kind, rows, cols = node.attrs["reduce"], node.attrs["rows"], node.attrs["cols"]
    init, step = REDUCE_INIT.get(kind, "0.0"), REDUCE_STEP.get(kind, "acc + a")
    ys = f"0; y < {x.height}" if rows else "oy; y <= oy"
    xs = f"0; x < {x.width}" if cols else "ox; x <= ox"
    n = (x.height if rows else 1) * (x.width if cols else 1)
    body = (f"  vec4 acc = vec4({init});\n  for (int y = {ys}; ++y) for (int x = {xs}; ++x) {{\n"
            f"    vec4 a = X(t, y, x); acc = {step};\n  }}\n")
    body += {"ReduceMean": f"  v = acc / {float(n)};\n", "ReduceL2": "  v = sqrt(acc);\n"}.get(kind, "  v = acc;\n")
    lw.emit(node, body, {"X": x}, out, 2.0 * n)


def _channel_arg(lw, node, x, out, is_max, last):
    """The index of the largest (smallest) channel, as a float (exact below 2^24 channels); ties go to the first
    index, or with select_last_index to the last, as ONNX says."""
    better = ("a > best" if is_max else "a < best") if not last else ("a >= best" if is_max else "a <= best")
    body = f"  float best = {'-3.4e38' if is_max else '3.4e38'}; float index = 0.0;\n"
    body += f"  for (int s = 0; s < {x.slices}; ++s) {{\n    vec4 v4 = X(s, oy, ox);\n"
    for lane in range(4):
        guard = f"s * 4 + {lane} < {x.channels} && " if x.channels % 4 and lane >= x.channels % 4 else ""
        body += (f"    {{ float a = v4[{lane}]; if ({guard}{better}) "
                 f"{{ best = a; index = float(s * 4 + {lane}); }} }}\n")
    body += "  }\n  v = vec4(index);\n"
    lw.emit(node, body, {"X": x}, out, 4.0 * x.slices)
