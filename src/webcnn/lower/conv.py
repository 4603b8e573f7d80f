"""Conv and ConvTranspose (and Gemm/MatMul heads, canonicalised to 1x1 Conv). One gather loop serves both."""
from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedError
from . import register
from .activations import activation_glsl
from .core import float_literal, inv_literal, inv_size, live_lanes, row_token, sample, texel, weight_from_texels

CONV_ATTRS = ["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides", "head"]
CONVT_ATTRS = CONV_ATTRS + ["output_padding", "output_shape"]


def _auto_pad(node):
    mode = node.attrs.get("auto_pad", "NOTSET")
    return mode.decode() if isinstance(mode, bytes) else mode


def _begin_pads(node, in_hw, out_hw, kernel, strides, dilations, transposed):
    mode = _auto_pad(node)
    if mode not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise UnsupportedError(node, f"auto_pad='{mode}'", "NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    if mode == "VALID":
        return [0, 0]
    if mode == "NOTSET" and not (transposed and "output_shape" in node.attrs):
        pads = node.attrs.get("pads", [0, 0, 0, 0])
        return [pads[0], pads[1]]
    begins = []
    for i in range(2):
        extent = (kernel[i] - 1) * dilations[i] + 1
        if transposed:
            out_pad = node.attrs.get("output_padding", [0, 0])[i]
            total = strides[i] * (in_hw[i] - 1) + out_pad + extent - out_hw[i]
        else:
            total = max((math.ceil(in_hw[i] / strides[i]) - 1) * strides[i] + extent - in_hw[i], 0)
        # Only SAME_UPPER puts the smaller half first; explicit output_shape pads like SAME_LOWER (ONNX spec).
        begins.append(total // 2 if mode == "SAME_UPPER" else total - total // 2)
    return begins


@register("Conv", attrs=CONV_ATTRS)
@register("ConvTranspose", attrs=CONVT_ATTRS)
def lower_conv(lw, node):
    g = lw.g
    if _defer_pointwise(lw, node):
        return
    transposed = node.op == "ConvTranspose"
    x_name, w_name = node.inputs[0], node.inputs[1]
    if x_name in lw.deferred:
        return _fused_pointwise_pair(lw, lw.deferred.pop(x_name), node)
    x_shape, out_shape = g.shape(x_name), g.shape(node.outputs[0])
    head = node.attrs.get("head", False)
    if not head and (len(x_shape) != 4 or x_shape[0] != 1):
        raise UnsupportedError(node, f"input shape {list(x_shape)}", "2-D convolution on NCHW input with batch 1")
    weight = g.const(w_name)
    if weight is None:
        raise UnsupportedError(node, "the weight is not a constant", "constant weights")
    if weight.ndim != 4:
        raise UnsupportedError(node, f"weight of rank {weight.ndim} (shape {list(weight.shape)})",
                               "rank-4 weights [Cout, Cin/group, kH, kW] for 2-D convolution")
    group = node.attrs.get("group", 1)
    weight = weight.astype(np.float32)
    if transposed:
        cin, cout_g = weight.shape[0], weight.shape[1]
        cin_g = cin // group
        # [Cin, Cout/g, kh, kw] -> [Cout, Cin/g, kh, kw], so both directions share one weight layout.
        weight = weight.reshape(group, cin_g, cout_g, *weight.shape[2:]).transpose(0, 2, 1, 3, 4)
        weight = weight.reshape(group * cout_g, cin_g, *weight.shape[3:])
    cout, cin_g, kh, kw = weight.shape
    x = lw.view(node, x_name)
    cin = x.channels
    if cin != cin_g * group or cout % group:
        raise UnsupportedError(node, f"weight shape {list(g.const(w_name).shape)} does not match {cin} input "
                               f"channels with group={group}", "consistent weight and group")
    cout_g = cout // group
    strides = node.attrs.get("strides", [1, 1])
    dilations = node.attrs.get("dilations", [1, 1])
    kernel = node.attrs.get("kernel_shape", [kh, kw])
    if list(kernel) != [kh, kw]:
        raise UnsupportedError(node, f"kernel_shape {list(kernel)} differs from the weight's {[kh, kw]}", "")
    out = lw.output_view(node.outputs[0])
    # Several output pixels per fragment share weight and input fetches (see _phased_body).
    phases = out.parts[0].phases
    phased = (not head and phases > 1 and (group == 1 or (cin_g == 1 and cout_g == 1))
              and (not transposed or phases % strides[1] == 0))
    in_hw, out_hw = (x.height, x.width), (out.height, out.width)
    pt, pl = _begin_pads(node, in_hw, out_hw, kernel, strides, dilations, transposed)

    bias_data = None
    if len(node.inputs) > 2 and node.inputs[2]:
        bias_data = g.const(node.inputs[2])
        if bias_data is None:
            raise UnsupportedError(node, "the bias is not a constant", "constant bias")
        bias_data = bias_data.astype(np.float32).reshape(-1)
    cout4 = math.ceil(cout / 4)
    samplers = []
    if bias_data is not None:
        bias_texels = np.zeros((1, cout4 * 4), np.float32)
        bias_texels[0, :cout] = bias_data
        bias = lw.add_weight(weight_from_texels(node.name + "/bias", bias_texels.reshape(1, cout4, 4), lw.max_size))
        samplers.append(("u_bias", bias))
        init = f"  vec4 acc = {texel('u_bias', inv_size(bias), 't', '0')};\n"
    else:
        init = "  vec4 acc = vec4(0.0);\n"

    kk = kh * kw
    if phased:
        body, texels, flops, kind = _phased_body(x, out, weight, group, init, kernel, strides, dilations, (pt, pl),
                                                 lw.max_size, transposed)
        w = lw.add_weight(weight_from_texels(node.name + "/weight", texels, lw.max_size))
        samplers.insert(0, ("u_w", w))
        lw.emit(node, body, {"X": x}, out, flops, samplers=samplers, phased_body=True)
        lw.passes[-1].op = f"{node.op}:{kind}"
        return
    if transposed:
        spatial_y = (f"    int ny = oy + {pt} - ky * {dilations[0]};\n"
                     f"    if (ny < 0 || ny % {strides[0]} != 0) continue;\n"
                     f"    int iy = ny / {strides[0]};\n    if (iy >= {x.height}) continue;\n")
        spatial_x = (f"      int nx = ox + {pl} - kx * {dilations[1]};\n"
                     f"      if (nx < 0 || nx % {strides[1]} != 0) continue;\n"
                     f"      int ix = nx / {strides[1]};\n      if (ix >= {x.width}) continue;\n")
    else:
        spatial_y = (f"    int iy = oy * {strides[0]} - {pt} + ky * {dilations[0]};\n"
                     f"    if (iy < 0 || iy >= {x.height}) continue;\n")
        spatial_x = (f"      int ix = ox * {strides[1]} - {pl} + kx * {dilations[1]};\n"
                     f"      if (ix < 0 || ix >= {x.width}) continue;\n")
    loops = (f"  for (int ky = 0; ky < {kh}; ++ky) {{\n" + spatial_y +
             f"    for (int kx = 0; kx < {kw}; ++kx) {{\n" + spatial_x +
             f"      int k = ky * {kw} + kx;\n")
    close = "    }\n  }\n"

    if group == 1 or (cin_g % 4 == 0 and cout_g % 4 == 0):
        kind = "dense"
        cin4 = math.ceil(cin_g / 4)
        texels = dense_texels(weight)
        texels, wt = _weight_texel(texels, lw.max_size)
        group_base = "0" if group == 1 else f"((t * 4) / {cout_g}) * {cin_g // 4}"
        inner = (f"      int wy = t * {kk} + k;\n"
                 f"      for (int c = 0; c < {cin4}; ++c) {{\n"
                 f"        vec4 xv = X(g0 + c, iy, ix);\n"
                 f"        acc += mat4({wt('4 * c', 'wy')}, {wt('4 * c + 1', 'wy')},\n"
                 f"                    {wt('4 * c + 2', 'wy')}, {wt('4 * c + 3', 'wy')}) * xv;\n"
                 f"      }}\n")
        body = init + f"  int g0 = {group_base};\n" + loops + inner + close + "  v = acc;\n"
        flops = 2.0 * 4 * cin_g * kk
    elif cin_g == 1 and cout_g == 1:
        kind = "depthwise"
        texels = np.zeros((cout4 * 4, kk), np.float32)
        texels[:cout] = weight.reshape(cout, kk)
        texels = texels.reshape(cout4, 4, kk).transpose(0, 2, 1)  # texel (k, t)
        texels, wt = _weight_texel(texels, lw.max_size)
        body = init + loops + f"      acc += X(t, iy, ix) * {wt('k', 't')};\n" + close + "  v = acc;\n"
        flops = 2.0 * 4 * kk
    else:
        kind = "grouped"
        texels = np.zeros((cout4 * 4, cin_g * kk), np.float32)
        texels[:cout] = weight.reshape(cout, cin_g * kk)
        texels = texels.reshape(cout4, 4, cin_g * kk).transpose(0, 2, 1)  # texel (icg*kk + k, t)
        texels, wt = _weight_texel(texels, lw.max_size)
        lanes = ""
        for lane in range(4):
            lanes += (f"      if (t * 4 + {lane} < {cout}) {{\n"
                      f"        int base = ((t * 4 + {lane}) / {cout_g}) * {cin_g};\n"
                      f"        for (int i = 0; i < {cin_g}; ++i) {{\n"
                      f"          int ic = base + i;\n"
                      f"          acc[{lane}] += X(ic / 4, iy, ix)[ic % 4] * {wt(f'i * {kk} + k', 't')}[{lane}];\n"
                      f"        }}\n      }}\n")
        body = init + loops + lanes + close + "  v = acc;\n"
        flops = 2.0 * 4 * cin_g * kk
    w = lw.add_weight(weight_from_texels(node.name + "/weight", texels, lw.max_size))
    samplers.insert(0, ("u_w", w))
    lw.emit(node, body, {"X": x}, out, flops, samplers=samplers)
    lw.passes[-1].op = f"{node.op}:{kind}"


def _weight_texel(texels: np.ndarray, max_size: int):
    """(texels as stored, (x, y) -> GLSL fetching texel (x, y) of `texels` [height, width, 4]). A row wider than
    the texture limit (a classifier head over a flattened map: thousands of input channels) is stored folded into
    blocks of rows, and the fetch finds the block."""
    height, width = texels.shape[:2]
    blocks = -(-width // max_size)
    if blocks == 1 or blocks * height > max_size:   # fits; or cannot fold (weight_from_texels says so)
        inv = inv_literal(width, height)
        return texels, lambda x, y: texel("u_w", inv, x, y)
    row = -(-width // blocks)
    padded = np.zeros((height, blocks * row, 4), np.float32)
    padded[:, :width] = texels
    folded = padded.reshape(height, blocks, row, 4).transpose(1, 0, 2, 3).reshape(blocks * height, row, 4)
    inv = inv_literal(row, blocks * height)
    return folded, lambda x, y: texel("u_w", inv, f"({x}) % {row}", f"({y}) + (({x}) / {row}) * {height}")


def dense_texels(weight: np.ndarray) -> np.ndarray:
    """[Cout, Cin, kh, kw] -> texel (4*ci_slice + lane, t*kk + k) holding output channels 4t..4t+3 of input channel."""
    cout, cin, kh, kw = weight.shape
    cout4, cin4, kk = math.ceil(cout / 4), math.ceil(cin / 4), kh * kw
    texels = np.zeros((cout4 * 4, cin4 * 4, kh, kw), np.float32)
    texels[:cout, :cin] = weight
    return texels.reshape(cout4, 4, cin4 * 4, kk).transpose(0, 3, 2, 1).reshape(cout4 * kk, cin4 * 4, 4)


def _phased_body(x, out, weight, group, init, kernel, strides, dilations, pads, max_size, transposed=False):
    """Direct convolution computing P horizontally adjacent output pixels per fragment (P = out.phases).

    Each weight texel is fetched once for the P pixels, and each input texel once for every (pixel, tap) pair that
    reads it (a 3x3 stride-1 row needs P + 2 input columns, not 3P). Edge columns are clamped and masked once per
    fragment, outside the loops. A transposed conv needs P to be a multiple of its stride: then which taps reach
    pixel x0 + j is known at compile time for every j."""
    P = out.parts[0].phases
    kh, kw = kernel
    kk = kh * kw
    (sy, sx), (dy, dx), (pt, pl) = strides, dilations, pads
    cout = weight.shape[0]
    cout4 = math.ceil(cout / 4)
    depthwise = group > 1
    # (pixel j, tap kx) -> input column offset u; input column = base + u; each u is fetched once
    if transposed:
        taps = {(j, kx): (j + pl - kx * dx) // sx for j in range(P) for kx in range(kw)
                if (j + pl - kx * dx) % sx == 0}
        base = f"x0 / {sx}"
    else:
        taps = {(j, kx): j * sx + kx * dx for j in range(P) for kx in range(kw)}
        base = f"x0 * {sx} - {pl}"
    cols = sorted(set(taps.values()))
    # Rows a fragment may read outside the input: where a row's work is short (depthwise, few input slices) they
    # are clamped and their weights zeroed, not skipped. On SwiftShader the branch cost MobileNetV2 8% (its
    # depthwise convs), and a 1x1 conv of 24 channels a quarter of its time (rows that cannot fall outside get
    # neither); over a long channel loop the branch is cheaper than masking every weight (zoo U-Net 2%).
    row_check = not transposed and (pt > 0 or (out.height - 1) * sy - pt + (kh - 1) * dy >= x.height)
    row_mask = row_check and (depthwise or all(_unrolled(part, kw) for part in x.parts))
    masked = " * ry" if row_mask else ""
    # Mask (and clamp) only the columns that a fragment holding a real output pixel can read outside the row: the
    # padding columns at either end (every column of a transposed conv).
    last_x0 = (out.width - 1) // P * P
    edge = {u: transposed or u - pl < 0 or last_x0 * sx - pl + u >= x.width for u in cols}
    # A fragment's first pixel x0 is a multiple of P: where P * stride is a multiple of an input part's phases,
    # every column's texel column is x0q * K + a constant and its layer a constant (x0q = x0 / P, from render), so
    # the per-column divisions go (SwiftShader runs integer division lane by lane). Edge columns clamp their texel
    # column instead of the pixel, so that needs a width a multiple of the phases (no padding pixels to land on).
    aligned = not transposed and all((P * sx) % part.phases == 0
                                     and (x.width % part.phases == 0 or not any(edge.values())) for part in x.parts)
    head = ""
    for u in cols:
        name = _uname(u)
        if edge[u] or not aligned:
            head += f"  int ix{name} = {base} + {u};\n"
        if edge[u]:
            head += f"  bool in{name} = ix{name} >= 0 && ix{name} < {x.width};\n"
        if not aligned:
            head += f"  ix{name} = clamp(ix{name}, 0, {x.width - 1});\n"
    acc = "".join(f"  vec4 v{j} = acc;\n" for j in range(P))
    # Texel columns (and layers) of each input column, per input part, once per fragment: the loops then only add
    # a slice origin. (The sampler of part k is u_X{k}, as emit() names them.)
    for k, part in enumerate(x.parts):
        for u in cols:
            n = _uname(u)
            if aligned:
                step, (c0, layer) = P * sx // part.phases, divmod(u - pl, part.phases)
                cx = f"x0q * {step} + {c0}"
                head += f"  int cx{k}_{n} = {f'clamp({cx}, 0, {part.texel_width - 1})' if edge[u] else cx};\n"
                if part.phases > 1:
                    head += f"  const int cl{k}_{n} = {layer};\n"
            elif part.phases > 1:
                head += f"  int cx{k}_{n} = ix{n} / {part.phases}; int cl{k}_{n} = ix{n} % {part.phases};\n"
            else:
                head += f"  int cx{k}_{n} = ix{n};\n"
            head += f"  float fu{k}_{n} = (float(cx{k}_{n}) + 0.5) * {inv_size(part)}.x;\n"
            if part.phases > 1:
                head += f"  float fl{k}_{n} = float(cl{k}_{n});\n"

    def fetch(k, part, u, ox, oy):
        n = _uname(u)
        f = texel(f"u_X{k}", inv_size(part), f"{ox}cx{k}_{n}", oy, f"cl{k}_{n}" if part.phases > 1 else None)
        return f"({f} * float(in{n}))" if edge[u] else f

    def fetch_hoisted(k, part, u, su, sv):
        """fetch() from float coordinates: the column's fu, plus the slice origin's su, at row coordinate sv."""
        n = _uname(u)
        uu = f"{su} + fu{k}_{n}" if su else f"fu{k}_{n}"
        f = (f"texture(u_X{k}, vec3({uu}, {sv}, fl{k}_{n}))" if part.phases > 1
             else f"texture(u_X{k}, vec2({uu}, {sv}))")
        return f"({f} * float(in{n}))" if edge[u] else f

    def origin(part, s):
        """(x + , y + ) prefixes of slice s's origin in its part (iy added to y)."""
        r = row_token(part)
        if part.cols == 1:
            return "", f"{s} * {part.height} + iy{r}"
        return f"({s} % {part.cols}) * {part.texel_width} + ", f"({s} / {part.cols}) * {part.height} + iy{r}"

    if depthwise:
        texels = np.zeros((cout4 * 4, kk), np.float32)
        texels[:cout] = weight.reshape(cout, kk)
        texels = texels.reshape(cout4, 4, kk).transpose(0, 2, 1)  # texel (k, t)
        unfolded = texels.shape[1]
        texels, wt = _weight_texel(texels, max_size)
        hoisted = texels.shape[1] == unfolded
        if hoisted:
            wx, wy = float_literal(1.0 / texels.shape[1]), float_literal(1.0 / texels.shape[0])
            weights = f"    float wu = float(ky * {kw}) * {wx};\n" + "".join(
                f"    vec4 w{kx} = texture(u_w, vec2(wu + {float_literal((kx + 0.5) / texels.shape[1])}, wv)){masked};\n"
                for kx in range(kw))
        else:
            weights = "".join(f"    vec4 w{kx} = {wt(f'ky * {kw} + {kx}', 't')}{masked};\n" for kx in range(kw))
        # The input slice t lives in one part of a concatenated input: choose the part once per fragment, and find
        # the slice's origin there once, outside the row loop.
        inner, offset = [], 0
        for k, part in enumerate(x.parts):
            if hoisted:
                inv, r = inv_size(part), row_token(part)
                ts = f"(t - {offset})"
                pre = f"  float wv = (float(t) + 0.5) * {wy};\n"
                if part.cols == 1:
                    pre += f"  float sv0 = (float({ts} * {part.height}{r}) + 0.5) * {inv}.y;\n"
                else:
                    pre += (f"  float su = float({ts} % {part.cols}) * ({part.texel_width}.0 * {inv}.x);\n"
                            f"  float sv0 = (float(({ts} / {part.cols}) * {part.height}{r}) + 0.5) * {inv}.y;\n")
                code = weights + f"    float sv = sv0 + float(iy) * {inv}.y;\n"
            else:
                ox, oy = origin(part, f"(t - {offset})")
                pre = ""
                code = weights + f"    int sy = {oy};\n" + (f"    int sx = {ox[:-3]};\n" if ox else "")
            for u in cols:
                xv = (fetch_hoisted(k, part, u, "su" if part.cols > 1 else "", "sv") if hoisted
                      else fetch(k, part, u, "sx + " if ox else "", "sy"))
                code += f"    {{ vec4 xv = {xv};\n" + _accumulate(taps, u, "      ") + "    }\n"
            offset += part.slices
            inner.append((f"t < {offset}", pre, code))
        flops, kind = 2.0 * 4 * kk, "depthwise"
    else:
        texels = dense_texels(weight)
        unfolded = texels.shape[1]
        texels, wt = _weight_texel(texels, max_size)
        w_size = texels.shape[1::-1] if texels.shape[1] == unfolded else None
        inner = _dense_loop(x, kk, kw, cols, taps, wt, w_size, origin, fetch, fetch_hoisted, masked)
        flops, kind = 2.0 * 4 * x.channels * kk, "dense"
    if transposed:
        rows = (f"    int ny = oy + {pt} - ky * {dy};\n    if (ny < 0 || ny % {sy} != 0) continue;\n"
                f"    int iy = ny / {sy};\n    if (iy >= {x.height}) continue;\n")
        # of the kw taps only those reaching a pixel count, and only 1/sy of the rows
        flops *= len(taps) / (P * kw) / sy
    else:
        rows = f"    int iy = oy * {sy} - {pt} + ky * {dy};\n"
        if row_mask:
            rows += f"    float ry = float(iy >= 0 && iy < {x.height}); iy = clamp(iy, 0, {x.height - 1});\n"
        elif row_check:
            rows += f"    if (iy < 0 || iy >= {x.height}) continue;\n"
    loop = ("  { const int ky = 0;\n" if kh == 1 and "continue" not in rows else
            f"  for (int ky = 0; ky < {kh}; ++ky) {{\n") + rows + "@BODY@" + "  }\n"
    if isinstance(inner, list):
        branches = [("" if i == 0 else " else ") + (f"if ({cond}) " if i < len(inner) - 1 else "") + "{\n"
                    + pre + loop.replace("@BODY@", code) + "  }" for i, (cond, pre, code) in enumerate(inner)]
        body = init + head + acc + "".join(branches) + "\n"
    else:
        body = init + head + acc + loop.replace("@BODY@", inner)
    return body, texels, flops, kind + f"x{P}"


def _dense_loop(x, kk, kw, cols, taps, wt, w_size, origin, fetch, fetch_hoisted, masked):
    """The dense input-channel loop: one per concatenated part (its own sampler, no per-fetch part selection).

    With w_size, the (width, height) of an unfolded weight texture, texture coordinates are floats with all but
    the slice step hoisted out (SwiftShader's JIT moves no invariant integer division or conversion out of a loop)
    and the slice origin steps along the cols x rows grid by adds. A part of few slices (times kernel columns) is
    unrolled instead: each slice's texel and weight columns are then constants (on SwiftShader MobileNetV2 ran 4-5%
    faster, its 1x1 convs over 16-32 channels most; unrolling longer loops, or a grid row at a time, was slower).
    Folded weights (None; see _weight_texel) are fetched by integer texel coordinates. `masked` multiplies the
    weights (zeroing rows outside the input)."""
    hoisted = w_size is not None
    if hoisted:
        w_width, w_height = w_size
        inner = "".join(f"    float wv{kx} = (float(t * {kk} + ky * {kw} + {kx}) + 0.5) * "
                        f"{float_literal(1.0 / w_height)};\n" for kx in range(kw))
    else:
        inner = f"    int wy = t * {kk} + ky * {kw};\n"
    offset = 0
    for k, part in enumerate(x.parts):
        # A one-slice last part of fewer than 4 channels (an RGB image): skip the all-zero weight columns.
        lanes = x.channels % 4 if k == len(x.parts) - 1 and part.slices == 1 and x.channels % 4 else 4

        def step(weight_column, xv, indent="      "):
            """One input slice: its weights (weight_column(i, kx): GLSL fetching lane i's column), then each input
            column (xv(u)) times the taps that read it."""
            code = ""
            for kx in range(kw):
                columns = [weight_column(i, kx) if i < lanes else "vec4(0.0)" for i in range(4)]
                code += (f"{indent}mat4 w{kx} = mat4({columns[0]}, {columns[1]},\n"
                         f"{indent}  {columns[2]}, {columns[3]}){masked};\n")
            for u in cols:
                code += f"{indent}{{ vec4 xv = {xv(u)};\n" + _accumulate(taps, u, indent + "  ") + f"{indent}}}\n"
            return code

        if hoisted:
            inv, r = inv_size(part), row_token(part)
            inner += f"    {{ float sv = (float(iy{r}) + 0.5) * {inv}.y;\n"
        if hoisted and _unrolled(part, kw):
            for c in range(part.slices):
                col, row = c % part.cols, c // part.cols
                su = f"{part.texel_width * col}.0 * {inv}.x" if col else ""
                sv = f"sv + {part.height * row}.0 * {inv}.y" if row else "sv"
                inner += "    {\n" + step(
                    lambda i, kx, c=c: f"texture(u_w, vec2({float_literal((4 * (offset + c) + i + 0.5) / w_width)}, "
                                       f"wv{kx}))",
                    lambda u, su=su, sv=sv: fetch_hoisted(k, part, u, su, sv)) + "    }\n"
            inner += "    }\n"
            offset += part.slices
            continue
        if hoisted:
            if part.cols > 1:
                inner += "    float su = 0.0;\n"
            inner += (f"    for (int c = 0; c < {part.slices}; ++c) {{\n"
                      f"      float wu = float(c) * {float_literal(4.0 / w_width)};\n")
            inner += step(lambda i, kx: f"texture(u_w, vec2(wu + {float_literal((4 * offset + i + 0.5) / w_width)}, "
                                        f"wv{kx}))",
                          lambda u: fetch_hoisted(k, part, u, "su" if part.cols > 1 else "", "sv"))
            if part.cols == 1:
                inner += f"      sv += {part.height}.0 * {inv}.y;\n"
            else:
                inner += (f"      su += {part.texel_width}.0 * {inv}.x;\n"
                          f"      if (su > {part.cols - 0.5} * {part.texel_width}.0 * {inv}.x) "
                          f"{{ su = 0.0; sv += {part.height}.0 * {inv}.y; }}\n")
        else:
            ox, oy = origin(part, "c")
            inner += (f"    {{ for (int c = 0; c < {part.slices}; ++c) {{\n"
                      f"      int wx = 4 * (c + {offset}); int sy = {oy};\n")
            if ox:
                inner += f"      int sx = {ox[:-3]};\n"
            inner += step(lambda i, kx: wt(f"wx + {i}", f"wy + {kx}"),
                          lambda u: fetch(k, part, u, "sx + " if ox else "", "sy"))
        inner += "    }}\n"
        offset += part.slices
    return inner


def _accumulate(taps, u, indent: str) -> str:
    """GLSL adding input column u (in `xv`) times each tap's weights (w{kx}) into the pixels (v{j}) that read it."""
    return "".join(f"{indent}v{j} += w{kx} * xv;\n" for (j, kx), col in taps.items() if col == u)


def _uname(u: int) -> str:
    return f"{u}" if u >= 0 else f"m{-u}"


def _plain_pointwise(g, node) -> bool:
    """A 1x1, stride 1, unpadded, ungrouped Conv with constant weights over a [1, C, H, W] input."""
    w = g.const(node.inputs[1]) if len(node.inputs) > 1 else None
    a = node.attrs
    return (node.op == "Conv" and not a.get("head", False) and w is not None and w.ndim == 4
            and w.shape[2:] == (1, 1) and a.get("group", 1) == 1 and list(a.get("strides", [1, 1])) == [1, 1]
            and list(a.get("dilations", [1, 1])) == [1, 1] and not any(a.get("pads", [0, 0, 0, 0]))
            and _auto_pad(node) in ("NOTSET", "VALID") and len(g.shape(node.inputs[0])) == 4
            and (len(node.inputs) < 3 or not node.inputs[2] or g.const(node.inputs[2]) is not None))


UNROLL_SLICES = 8      # a dense conv part of at most this many slices x kernel columns is unrolled


def _unrolled(part, kw: int) -> bool:
    """Whether _dense_loop unrolls this input part's channel loop (with unfolded weights): its rows are then short
    enough that _phased_body masks rows outside the input rather than branching around them."""
    return part.slices * kw <= UNROLL_SLICES


MAX_FUSED_SLICES = 8   # accumulators of the first conv: P x this many vec4 registers


def _defer_pointwise(lw, node) -> bool:
    """1x1 conv A whose only reader is a 1x1 conv B of at most 4 output channels (a segmentation head): lower them
    as one pass (see _fused_pointwise_pair) and never store A's output. Returns True when A is deferred."""
    g = lw.g
    if lw.phases == 1 or not _plain_pointwise(g, node) or any(s[0] != "act" for s in node.epilogue):
        return False
    out = node.outputs[0]
    users = g.consumers(out)
    residual = any(s[0] == "add" and s[1] == out for n in g.nodes for s in n.epilogue)
    if len(users) != 1 or residual or out in lw.keep or out in g.outputs or not _plain_pointwise(g, users[0]):
        return False
    b = users[0]
    if b.inputs[0] != out or g.const(b.inputs[1]).shape[0] > 4 or math.ceil(g.shape(out)[1] / 4) > MAX_FUSED_SLICES:
        return False
    x = lw.views.get(node.inputs[0])
    if x is None or lw.default_phases(x.width) != lw.phases or b.outputs[0] in lw.keep:
        return False
    lw.deferred[out] = node
    return True


def _fused_pointwise_pair(lw, a, b):
    """B(act(A(x))) for 1x1 convs, B with one output slice: each fragment computes all of A's channels for its P
    pixels, applies A's epilogue, then B. Unfused, every A output slice re-fetches x and B re-fetches A's output:
    fused, x is fetched once per fragment and A's output never leaves registers."""
    g = lw.g
    x = lw.view(a, a.inputs[0])
    out = lw.output_view(b.outputs[0])
    P = out.parts[0].phases
    wa, wb = g.const(a.inputs[1]).astype(np.float32), g.const(b.inputs[1]).astype(np.float32)
    ca, cb = wa.shape[0], wb.shape[0]
    ca4 = math.ceil(ca / 4)
    samplers, body = [], ""

    def bias_texels(node, c):
        t = np.zeros((1, math.ceil(c / 4) * 4), np.float32)
        if len(node.inputs) > 2 and node.inputs[2]:
            t[0, :c] = g.const(node.inputs[2]).astype(np.float32).reshape(-1)
        return t.reshape(1, -1, 4)

    wa_tex = lw.add_weight(weight_from_texels(a.name + "/weight", dense_texels(wa), lw.max_size))
    ba_tex = lw.add_weight(weight_from_texels(a.name + "/bias", bias_texels(a, ca), lw.max_size))
    wb_tex = lw.add_weight(weight_from_texels(b.name + "/weight", dense_texels(wb), lw.max_size))
    bb_tex = lw.add_weight(weight_from_texels(b.name + "/bias", bias_texels(b, cb), lw.max_size))
    samplers = [("u_wa", wa_tex), ("u_ba", ba_tex), ("u_wb", wb_tex), ("u_bb", bb_tex)]
    fa, fba, fb, fbb = (lambda x, y, u=u, t=t: texel(u, inv_size(t), x, y) for u, t in samplers)   # fetchers
    for s in range(ca4):
        body += f"  vec4 ba{s} = {fba(s, 0)};\n"
        body += "".join(f"  vec4 h{s}_{j} = ba{s};\n" for j in range(P))
    offset = 0
    for k, part in enumerate(x.parts):
        cols = f"x0 / {part.phases}" if part.phases > 1 else "x0"
        body += f"  for (int c = 0; c < {part.slices}; ++c) {{\n    int wx = 4 * (c + {offset});\n"
        for j in range(P):
            body += f"    vec4 x{j}v = {sample(f'u_X{k}', part, 'c', 'oy', f'px{j}')};\n"
        for s in range(ca4):
            body += (f"    {{ mat4 w = mat4({fa('wx', s)}, {fa('wx + 1', s)},"
                     f" {fa('wx + 2', s)}, {fa('wx + 3', s)});\n")
            body += "".join(f"      h{s}_{j} += w * x{j}v;\n" for j in range(P)) + "    }\n"
        body += "  }\n"
        offset += part.slices
    # a select (as render's mask): A's epilogue may leave inf or NaN in a padding lane (1 / 0), and NaN * 0.0 is NaN
    mask = live_lanes(ca) if ca % 4 else None
    body += f"  vec4 bb = {fbb(0, 0)};\n" + "".join(f"  vec4 v{j} = bb;\n" for j in range(P))
    for s in range(ca4):
        body += (f"  {{ mat4 w = mat4({fb(4 * s, 0)}, {fb(4 * s + 1, 0)},"
                 f" {fb(4 * s + 2, 0)}, {fb(4 * s + 3, 0)});\n")
        for j in range(P):
            body += f"    {{ vec4 v = h{s}_{j};\n"
            for step in a.epilogue:
                body += "  " + activation_glsl(a, step[1], step[2])
            if mask and s == ca4 - 1:
                body += f"      v = mix(vec4(0.0), v, {mask});\n"
            body += f"      v{j} += w * v; }}\n"
        body += "  }\n"
    # pixel columns of the fragment, clamped: a padding pixel reads the last real one
    head = "".join(f"  int px{j} = min(x0 + {j}, {x.width - 1});\n" for j in range(P))
    flops = 2.0 * (x.channels * ca + ca * 4)
    lw.emit(b, head + body, {"X": x}, out, flops, samplers=samplers, phased_body=True)
    lw.passes[-1].op = f"Conv:pointwise-pairx{P}"
    lw.passes[-1].node = a.name + "+" + b.name
