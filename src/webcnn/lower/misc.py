"""Concat, Relayout (Reshape/Transpose chains), BatchMatMul, Pad, Softmax, LRN."""
from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedError
from ..ir import chw, chw_groups
from . import register
from .core import View, float_literal, live_lanes

MAX_VIRTUAL_PARTS = 8  # a virtual concat costs one sampler per part in every reader
LONG_SOFTMAX = 16      # past this many values along a row or column, softmax takes a statistics pass first


def _axis(node, rank, default=0):
    axis = node.attrs.get("axis", default)
    return axis + rank if axis < 0 else axis


@register("Concat", attrs=["axis"])
def lower_concat(lw, node):
    g = lw.g
    out_shape = g.shape(node.outputs[0])
    axis = _axis(node, len(out_shape))
    names = [n for n in node.inputs if n and int(np.prod(g.shape(n))) > 0]
    groups = chw_groups(out_shape)
    on_channels = axis in groups[0] and all(out_shape[a] == 1 for a in groups[0] if a < axis)
    if not on_channels:
        canon = "height" if axis in groups[1] else "width" if axis in groups[2] else None
        if canon is None:
            raise UnsupportedError(node, f"concatenation on axis {axis} of {list(out_shape)}",
                                   "Concat on the channel axis (or the height/width axis of NCHW)")
        return _concat_spatial(lw, node, names, canon)
    views = [lw.const_view(node.name + "/" + n, g.const(n).astype(np.float32).reshape(chw(g.shape(n))))
             if g.is_const(n) else lw.view(node, n) for n in names]
    aligned = all(v.channels % 4 == 0 for v in views[:-1])
    parts = [p for v in views for p in v.parts]
    if aligned and len(parts) <= MAX_VIRTUAL_PARTS and node.outputs[0] not in g.outputs:
        # Zero copy: readers fetch each channel slice from the part that holds it.
        c, h, w = chw(out_shape)
        lw.views[node.outputs[0]] = View(c, h, w, parts)
        return
    _concat_copy(lw, node, views, lw.output_view(node.outputs[0]))


def _concat_copy(lw, node, views, out):
    """Copy channel ranges into one texture. Too many parts for the texture units: copy in groups first."""
    if sum(len(v.parts) for v in views) > MAX_VIRTUAL_PARTS:
        grouped, group = [], []
        for view in views:
            if group and sum(len(v.parts) for v in group) + len(view.parts) > MAX_VIRTUAL_PARTS:
                grouped.append(group)
                group = []
            group.append(view)
        grouped.append(group)
        if len(grouped) > 1:
            views = []
            for group in grouped:
                c = sum(v.channels for v in group)
                partial = View(c, out.height, out.width, [lw.new_storage(c, out.height, out.width)])
                _concat_copy(lw, node, group, partial)
                views.append(partial)
            return _concat_copy(lw, node, views, out)
    # Output slice t takes, from each input it overlaps, a window of 4 channels that starts at a fixed lane of the
    # input's slices (offsets are compile-time), so two fetches and a constant swizzle fill it: no per-lane branches
    # or dynamic vector indexing, which cost SwiftShader 25x.
    body = "  v = vec4(0.0);\n  ivec4 c = ivec4(t * 4) + ivec4(0, 1, 2, 3);\n"
    offset = 0
    for k, view in enumerate(views):
        end = offset + view.channels
        shift = -offset % 4
        last = (view.channels - 1) // 4
        first = f"t - {(offset + shift) // 4}"
        body += f"  if (t * 4 + 3 >= {offset} && t * 4 < {end}) {{\n    int q = {first};\n"
        if shift == 0:
            window = f"X{k}(q, oy, ox)"
        else:
            head, tail = "xyzw"[shift:], "xyzw"[:shift]
            body += (f"    vec4 a = X{k}(max(q, 0), oy, ox);\n"
                     f"    vec4 b = X{k}(min(q + 1, {last}), oy, ox);\n")
            window = f"vec4(a.{head}, b.{tail})"
        body += (f"    v = mix(v, {window}, bvec4(ivec4(greaterThanEqual(c, ivec4({offset}))) * "
                 f"ivec4(lessThan(c, ivec4({end})))));\n  }}\n")
        offset = end
    lw.emit(node, body, {f"X{k}": v for k, v in enumerate(views)}, out, 4.0, epilogue=False)


def _concat_spatial(lw, node, names, canon):
    g = lw.g
    views = [lw.view(node, n) if not g.is_const(n) else
             lw.const_view(node.name + "/" + n, g.const(n).astype(np.float32).reshape(chw(g.shape(n))))
             for n in names]
    out = lw.output_view(node.outputs[0])
    coord = "oy" if canon == "height" else "ox"
    body, offset, inputs = "", 0, {}
    for k, view in enumerate(views):
        size = view.height if canon == "height" else view.width
        inputs[f"X{k}"] = view
        args = "t, oy - {o}, ox".format(o=offset) if canon == "height" else "t, oy, ox - {o}".format(o=offset)
        body += f"  {'if' if k == 0 else 'else if'} ({coord} < {offset + size}) v = X{k}({args});\n"
        offset += size
    lw.emit(node, body, inputs, out, 1.0)


def _index_map(node, in_shape, steps):
    idx = np.arange(int(np.prod(in_shape)), dtype=np.int64).reshape(in_shape)
    for kind, arg in steps:
        try:
            if kind == "reshape":
                idx = idx.reshape(arg)
            elif kind == "transpose":
                idx = idx.transpose(arg)
            elif kind == "slice":  # from Slice/Split; slice.indices() gives stop=-1 for a reversal to the start
                idx = idx[tuple(slice(b, None if e < 0 else e, st) for b, e, st in arg)]
            elif kind == "take":  # Gather with constant indices (a scalar index drops the axis, as np.take)
                idx = np.take(idx, np.array(arg[0], np.int64), axis=arg[1])
            else:  # "broadcast": repeat size-1 axes, as Expand and batched MatMul need
                idx = np.broadcast_to(idx, arg)
        except ValueError as e:
            raise UnsupportedError(node, f"layout step {kind} {list(arg)} on {list(idx.shape)}: {e}", "") from None
    return idx


@register("Relayout", attrs=["steps"])
def lower_relayout(lw, node):
    g = lw.g
    in_shape, out_shape = g.shape(node.inputs[0]), g.shape(node.outputs[0])
    x = lw.view(node, node.inputs[0])
    src = _index_map(node, in_shape, node.attrs["steps"])
    if tuple(src.shape) != tuple(out_shape):
        raise UnsupportedError(node, f"layout steps give {list(src.shape)}, expected {list(out_shape)}", "")
    flat = src.reshape(chw(out_shape))
    plain = all(getattr(p, "phases", 1) == 1 for p in x.parts) or node.outputs[0] not in lw.keep
    identity = flat.shape == (x.channels, x.height, x.width) and np.array_equal(flat.reshape(-1), np.arange(flat.size))
    if plain and identity and not node.epilogue:
        lw.views[node.outputs[0]] = x  # a pure reshape that keeps the texture layout: no pass
        return
    gather(lw, node, x, flat, lw.output_view(node.outputs[0]), epilogue=True)


def gathered_view(lw, node, x, flat):
    """A new tensor laid out as flat.shape (C, H, W) whose element i is element flat[i] of x (row-major)."""
    c, h, w = flat.shape
    out = View(c, h, w, [lw.new_storage(c, h, w)])
    gather(lw, node, x, flat, out)
    lw.passes[-1].op = f"{node.op}:relayout"
    return out


def _texel_map(flat, height, width):
    """If every output texel holds lanes 0-3 of one input texel (same lanes, in order), a table giving, per output
    texel, (input slice, row, column) in lanes 0-2; else None. flat: (C, H, W) row-major indices into (C', height,
    width)."""
    c, h, w = flat.shape
    pixels = height * width
    quads = np.full((-(-c // 4) * 4, h, w), -1, np.int64)
    quads[:c] = flat
    quads = quads.reshape(-1, 4, h, w)
    first = quads[:, 0]
    if np.any((first // pixels) % 4):
        return None
    expected = first[:, None] + np.arange(4).reshape(1, 4, 1, 1) * pixels
    valid = quads >= 0
    if not np.array_equal(quads[valid], expected[valid]):
        return None
    pixel = first % pixels
    table = np.stack([first // pixels // 4, pixel // width, pixel % width, np.zeros_like(first)], 1)
    return table.reshape(-1, h, w).astype(np.float32)


def gather(lw, node, x, flat, out, epilogue=False):
    """One pass that writes out[c, y, x] = x.flat[flat[c, y, x]], the row-major index into x's (C, H, W)."""
    c, h, w = flat.shape
    ci, hi, wi = x.channels, x.height, x.width
    if float(flat.size) >= 2 ** 24 or float(ci * hi * wi) >= 2 ** 24:
        raise UnsupportedError(node, "a relayout of more than 16M elements", "smaller tensors")
    src_c = flat // (hi * wi)
    same_pixel = (h, w) == (hi, wi) and np.array_equal(flat % (hi * wi), np.arange(h * w).reshape(1, h, w).repeat(c, 0))
    if same_pixel and np.all(src_c == src_c[:, :1, :1]):
        # A channel permutation such as ShuffleNet's shuffle: a per-channel source table.
        table = lw.const_view(node.name + "/channels", src_c[:, 0, 0].astype(np.float32).reshape(c, 1, 1))
        body = "  vec4 src = P(t, 0, 0);\n"
        for lane in range(4):
            body += f"  {{ int c = int(src[{lane}]); v[{lane}] = X(c / 4, oy, ox)[c % 4]; }}\n"
        lw.emit(node, "  v = vec4(0.0);\n" + body, {"X": x, "P": table}, out, 4.0, epilogue=epilogue)
        return
    texel = _texel_map(flat, hi, wi)
    if texel is not None:
        # Every output texel is one whole input texel (a crop, flip, H/W transpose, or broadcast over H/W): one
        # fetch of its (slice, row, column), one of the data, instead of a fetch per lane.
        table = lw.const_view(node.name + f"/texels{len(lw.weights)}", texel)
        body = "  vec4 src = I(t, oy, ox);\n  v = X(int(src.x), int(src.y), int(src.z));\n"
        lw.emit(node, body, {"X": x, "I": table}, out, 1.0, epilogue=epilogue)
        return
    table = lw.const_view(node.name + f"/index{len(lw.weights)}", flat.astype(np.float32))
    body = "  vec4 src = I(t, oy, ox);\n"
    for lane in range(4):
        body += (f"  {{ int f = int(src[{lane}]); int c = f / {hi * wi}; int r = f - c * {hi * wi};\n"
                 f"    int y = r / {wi}; v[{lane}] = X(c / 4, y, r - y * {wi})[c % 4]; }}\n")
    lw.emit(node, "  v = vec4(0.0);\n" + body, {"X": x, "I": table}, out, 4.0, epilogue=epilogue)


@register("BatchMatMul", attrs=[])
def lower_batch_matmul(lw, node):
    """[1, G, M, K] x [1, G, K, N] (see optimize._batched_matmul): a texel holds 4 batches at one (row, col)."""
    g = lw.g
    a, b = (lw.const_view(f"{node.name}/{n}", g.const(n).reshape(chw(g.shape(n)))) if g.is_const(n)
            else lw.view(node, n) for n in node.inputs[:2])
    k = a.width
    body = f"  vec4 acc = vec4(0.0);\n  for (int k = 0; k < {k}; ++k) acc += A(t, oy, k) * B(t, k, ox);\n  v = acc;\n"
    lw.emit(node, body, {"A": a, "B": b}, lw.output_view(node.outputs[0]), 8.0 * k)


@register("Pad", attrs=["mode", "pads", "value"])
def lower_pad(lw, node):
    g = lw.g
    shape = g.shape(node.inputs[0])
    rank = len(shape)
    mode = node.attrs.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = g.const(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
    if pads is None:
        raise UnsupportedError(node, "pads is not a constant", "constant pads")
    pads = [int(p) for p in pads.reshape(-1)]
    axes = list(range(rank))
    if len(node.inputs) > 3 and node.inputs[3]:
        axes = [int(a) % rank for a in g.const(node.inputs[3]).reshape(-1)]
    begin, end = [0] * rank, [0] * rank
    for k, a in enumerate(axes):
        begin[a], end[a] = pads[k], pads[k + len(axes)]
    value = 0.0
    if len(node.inputs) > 2 and node.inputs[2]:
        const = g.const(node.inputs[2])
        if const is None:
            raise UnsupportedError(node, "constant_value is computed", "a constant pad value")
        value = float(const.reshape(-1)[0]) if const.size else 0.0
    if rank != 4 or any(begin[:2]) or any(end[:2]):
        raise UnsupportedError(node, f"padding {pads} of a rank-{rank} tensor", "padding H and W of NCHW tensors")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise UnsupportedError(node, f"mode='{mode}'", "constant, reflect, edge, wrap")
    x = lw.view(node, node.inputs[0])
    out = lw.output_view(node.outputs[0])
    body = f"  int iy = oy - {begin[2]}; int ix = ox - {begin[3]};\n"
    H, W = x.height, x.width
    if mode == "constant":
        body += (f"  if (iy < 0 || iy >= {H} || ix < 0 || ix >= {W}) v = vec4({float_literal(value)});\n"
                 "  else v = X(t, iy, ix);\n")
    else:
        for c, n in (("iy", H), ("ix", W)):
            if mode == "reflect":
                body += f"  {c} = {c} < 0 ? -{c} : ({c} >= {n} ? {2 * (n - 1)} - {c} : {c});\n"
            elif mode == "edge":
                body += f"  {c} = clamp({c}, 0, {n - 1});\n"
            else:
                body += f"  {c} = (({c} % {n}) + {n}) % {n};\n"
        body += "  v = X(t, iy, ix);\n"
    lw.emit(node, body, {"X": x}, out, 1.0)


@register("Softmax", "LogSoftmax", attrs=["axis"])
def lower_softmax(lw, node):
    g = lw.g
    shape = g.shape(node.inputs[0])
    rank = len(shape)
    axis = _axis(node, rank, default=-1 if g.opset >= 13 else 1)
    x = lw.view(node, node.inputs[0])
    groups = chw_groups(shape)
    reduced = list(range(axis, rank)) if g.opset < 13 else [axis]
    big = set(a for a in reduced if shape[a] > 1)
    over_channels = big <= set(groups[0]) and all(shape[a] == 1 for a in groups[0] if a < axis)
    over_all = g.opset < 13 and all(shape[a] == 1 for a in range(axis))
    spatial = "oy" if big <= set(groups[1]) else "ox" if big <= set(groups[2]) else None
    if not (over_channels or over_all or spatial):
        raise UnsupportedError(node, f"axis={node.attrs.get('axis')} on shape {list(shape)}",
                               "softmax over the channels of NCHW, over one axis that is the height or width "
                               "of the texture layout, or over the whole of a [1, ...] tensor")
    out = lw.output_view(node.outputs[0])
    s_last = x.slices - 1
    live = live_lanes(x.channels)
    if over_channels and x.slices == 1:
        # All channels in one texel: one fetch (the generic loops below fetch it three times).
        body = ("  vec4 a = X(0, oy, ox);\n"
                f"  vec4 b = mix(vec4(-3.4e38), a, {live});\n"
                "  float m = max(max(b.x, b.y), max(b.z, b.w));\n"
                f"  vec4 e = mix(vec4(0.0), exp(min(a - m, 0.0)), {live}); float sum = dot(e, vec4(1.0));\n")
        body += "  v = e / sum;\n" if node.op == "Softmax" else f"  v = mix(vec4(0.0), a - m - log(sum), {live});\n"
        lw.emit(node, body, {"X": x}, out, 12.0)
        return
    if spatial and not over_channels and (x.height if spatial == "oy" else x.width) > LONG_SOFTMAX:
        # A long axis (attention over many tokens): one pass keeps each row's running max and sum, another
        # normalises, so each value costs O(1) instead of a loop over the whole axis.
        n = x.height if spatial == "oy" else x.width
        c, h, w = (x.channels, 2, x.width) if spatial == "oy" else (x.channels, x.height, 2)
        stats = View(c, h, w, [lw.new_storage(c, h, w)])
        at, which = ("t, i, ox", "oy") if spatial == "oy" else ("t, oy, i", "ox")
        lw.emit(node, f"  vec4 m = vec4(-3.4e38), sum = vec4(0.0);\n  for (int i = 0; i < {n}; ++i) {{\n"
                      f"    vec4 a = X({at}); vec4 top = max(m, a);\n"
                      "    sum = sum * exp(m - top) + exp(a - top); m = top;\n  }\n"
                      f"  v = {which} == 0 ? m : sum;\n", {"X": x}, stats, 12.0 * n, epilogue=False)
        lw.passes[-1].op = f"{node.op}:stats"
        m_at, s_at = ("t, 0, ox", "t, 1, ox") if spatial == "oy" else ("t, oy, 0", "t, oy, 1")
        body = f"  vec4 m = S({m_at}), sum = S({s_at});\n"
        body += ("  v = exp(X(t, oy, ox) - m) / sum;\n" if node.op == "Softmax" else
                 "  v = X(t, oy, ox) - m - log(sum);\n")
        lw.emit(node, body, {"X": x, "S": stats}, out, 12.0)
        return
    if spatial and not over_channels:
        # Each lane is its own channel: per-lane max and sum along one row or column.
        n = x.height if spatial == "oy" else x.width
        at = "t, i, ox" if spatial == "oy" else "t, oy, i"
        body = (f"  vec4 m = vec4(-3.4e38);\n  for (int i = 0; i < {n}; ++i) m = max(m, X({at}));\n"
                f"  vec4 sum = vec4(0.0);\n  for (int i = 0; i < {n}; ++i) sum += exp(X({at}) - m);\n")
        flops = 12.0 * n
    else:
        if over_channels:
            loop_open, loop_close, at = f"  for (int s = 0; s < {x.slices}; ++s) {{\n", "  }\n", "s, oy, ox"
            flops = 12.0 * x.slices
        else:
            loop_open = (f"  for (int s = 0; s < {x.slices}; ++s) for (int y = 0; y < {x.height}; ++y)"
                         f" for (int x = 0; x < {x.width}; ++x) {{\n")
            loop_close, at = "  }\n", "s, y, x"
            flops = 12.0 * x.slices * x.height * x.width
        body = ("  float m = -3.4e38;\n" + loop_open +
                f"    vec4 a = X({at}); if (s == {s_last}) a = mix(vec4(-3.4e38), a, {live});\n"
                "    m = max(m, max(max(a.x, a.y), max(a.z, a.w)));\n" + loop_close +
                "  float sum = 0.0;\n" + loop_open +
                f"    vec4 e = exp(min(X({at}) - m, 0.0)); if (s == {s_last}) e = mix(vec4(0.0), e, {live});\n"
                "    sum += dot(e, vec4(1.0));\n" + loop_close)
    if node.op == "Softmax":
        body += "  v = exp(X(t, oy, ox) - m) / sum;\n"
    else:
        body += "  v = X(t, oy, ox) - m - log(sum);\n"
    lw.emit(node, body, {"X": x}, out, flops)


@register("Normalize", attrs=["axis", "epsilon"])
def lower_normalize(lw, node):
    """(x - mean) / sqrt(var + eps) over the axes from `axis` on (LayerNormalization without its affine, which
    optimize leaves to a Mul and an Add): per lane along the texture's width, height or both, or over everything
    when the normalised axes cover the channels. Two passes over the values: var is the mean of squared
    deviations, not E[x^2] - mean^2, which cancels badly in float32."""
    g = lw.g
    shape = g.shape(node.inputs[0])
    axis = node.attrs["axis"]
    x = lw.view(node, node.inputs[0])
    out = lw.output_view(node.outputs[0])
    groups = chw_groups(shape)
    big = {a for a in range(axis, len(shape)) if shape[a] > 1}
    over_channels = bool(big & set(groups[0])) and all(shape[a] == 1 for a in groups[0] if a < axis)
    eps = float_literal(node.attrs["epsilon"])
    if over_channels:
        n = x.channels * x.height * x.width
        s_last = x.slices - 1
        loop = (f"  for (int s = 0; s < {x.slices}; ++s) for (int y = 0; y < {x.height}; ++y)"
                f" for (int x = 0; x < {x.width}; ++x) {{\n    vec4 a = X(s, y, x);"
                f" bvec4 live = s == {s_last} ? {live_lanes(x.channels)} : bvec4(true);\n")
        body = ("  float sum = 0.0;\n" + loop + "    sum += dot(mix(vec4(0.0), a, live), vec4(1.0));\n  }\n"
                f"  float mean = sum / {float(n)};\n  float sq = 0.0;\n" + loop +
                "    vec4 d = mix(vec4(0.0), a - mean, live); sq += dot(d, d);\n  }\n"
                f"  v = (X(t, oy, ox) - mean) / sqrt(sq / {float(n)} + {eps});\n")
        flops = 8.0 * x.slices * x.height * x.width
    else:
        along_y, along_x = bool(big & set(groups[1])), bool(big & set(groups[2]))
        if not big <= set(groups[1]) | set(groups[2]):
            raise UnsupportedError(node, f"normalising axes {sorted(big)} of {list(shape)}",
                                   "LayerNormalization over the last axis, the last two, or from the channels on")
        ys = f"0; y < {x.height}" if along_y else "oy; y <= oy"
        xs = f"0; x < {x.width}" if along_x else "ox; x <= ox"
        n = (x.height if along_y else 1) * (x.width if along_x else 1)
        loop = f"  for (int y = {ys}; ++y) for (int x = {xs}; ++x) {{\n    vec4 a = X(t, y, x);\n"
        body = ("  vec4 sum = vec4(0.0);\n" + loop + "    sum += a;\n  }\n"
                f"  vec4 mean = sum / {float(n)};\n  vec4 sq = vec4(0.0);\n" + loop +
                "    vec4 d = a - mean; sq += d * d;\n  }\n"
                f"  v = (X(t, oy, ox) - mean) / sqrt(sq / {float(n)} + {eps});\n")
        flops = 8.0 * n
    lw.emit(node, body, {"X": x}, out, flops)


@register("LRN", attrs=["alpha", "beta", "bias", "size"])
def lower_lrn(lw, node):
    x = lw.view(node, node.inputs[0])
    out = lw.output_view(node.outputs[0])
    size = node.attrs["size"]
    lo, hi = (size - 1) // 2, math.ceil((size - 1) / 2)
    alpha = node.attrs.get("alpha", 1e-4) / size
    beta, bias = node.attrs.get("beta", 0.75), node.attrs.get("bias", 1.0)
    body = "  vec4 xc = X(t, oy, ox);\n"
    for lane in range(4):
        body += (f"  {{ int c = t * 4 + {lane}; float s = 0.0;\n"
                 f"    for (int j = max(c - {lo}, 0); j <= min(c + {hi}, {x.channels - 1}); ++j) {{\n"
                 f"      float a = X(j / 4, oy, ox)[j % 4]; s += a * a; }}\n"
                 f"    v[{lane}] = xc[{lane}] / pow({float_literal(bias)} + {float_literal(alpha)} * s, "
                 f"{float_literal(beta)}); }}\n")
    lw.emit(node, body, {"X": x}, out, 4.0 * (3 * size + 4))
