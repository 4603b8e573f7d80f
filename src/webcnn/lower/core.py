"""What lowering produces: storages (activation textures), weights, views over them, and passes with GLSL."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import WebcnnError


THIN_ROWS = 8   # a tensor laid out fewer texel rows high than this is made square (see grid)


def grid(slices: int, height: int, width: int, max_size: int, wide: int = 0) -> tuple[int, int]:
    """Lay `slices` HxW tiles out as a cols x rows grid that fits max_size: as many columns as fit in `wide`
    texels (at least one), then more if the column would be too tall.

    `width` is in texels: a phase-split storage passes ceil(W / phases)."""
    if height > max_size or width > max_size:
        raise WebcnnError(f"a {height}x{width} feature map exceeds the texture size limit {max_size}; "
                          "compile with a smaller input size or a larger --max-texture-size")
    per_column = max_size // height
    cols = min(slices, max(math.ceil(slices / per_column), wide // width, 1))
    rows = math.ceil(slices / cols)
    if rows * height < THIN_ROWS:
        # A strip a row or two high (a classifier's 1x1 map) is drawn as one-row tiles, which SwiftShader runs on
        # one thread with half of each 2x2 quad idle: lay it out square instead.
        cols = max(math.ceil(slices / per_column), min(cols, math.ceil(math.sqrt(slices * height / width))))
        rows = math.ceil(slices / cols)
    if cols * width > max_size:
        raise WebcnnError(f"a tensor of {slices * 4} channels at {height}x{width} does not fit in "
                          f"{max_size}x{max_size} textures; compile with a smaller input size")
    return cols, rows


@dataclass(eq=False)
class Part:
    """A texture holding `slices` RGBA slices of HxW, laid out cols x rows.

    With phases P > 1 it is a P-layer array texture: pixel x of a row lives in layer x % P, column x / P. A conv
    pass then writes P neighbouring pixels per fragment (one per render target) and fetches each weight once for
    all of them; texture fetches, not arithmetic, are what costs on a GPU like SwiftShader."""
    slices: int
    height: int
    width: int
    cols: int
    rows: int
    phases: int = 1

    @property
    def texel_width(self) -> int:
        return -(-self.width // self.phases)

    @property
    def size(self) -> tuple[int, int]:
        return self.cols * self.texel_width, self.rows * self.height

    @property
    def sampler_type(self) -> str:
        return "sampler2DArray" if self.phases > 1 else "sampler2D"


@dataclass(eq=False)
class Storage(Part):
    """An activation texture region, written by one pass; physical textures are assigned by the planner.

    Tensors alive at the same time may share a texture at different row offsets y0. Shaders are written before
    planning, so they name the offset by a token, row_token(), that the compiler replaces once y0 is known."""
    id: int = -1
    texture: int = -1
    y0: int = 0


def row_token(part) -> str:
    """' + <first row of the part>' in GLSL source: a token for storages (see Storage), nothing for weights."""
    return f" + @Y{part.id}@" if isinstance(part, Storage) else ""


@dataclass(eq=False)
class Weight(Part):
    name: str = ""
    data: np.ndarray = None  # float32 [height*rows, width*cols, 4]


@dataclass(eq=False)
class View:
    """A tensor as channels x height x width over one or more parts concatenated along channels."""
    channels: int
    height: int
    width: int
    parts: list

    @property
    def slices(self) -> int:
        return math.ceil(self.channels / 4)


@dataclass(eq=False)
class Pass:
    node: str
    op: str
    source: str
    samplers: list  # [(uniform name, Part)]
    output: Storage
    flops_per_texel: float
    bytes_per_texel: float
    phased: bool = False   # its kernel shares fetches between the P pixels of a fragment (render's phased_body)


def weight_from_chw(name: str, array: np.ndarray, max_size: int) -> Weight:
    """Pack a [C, H, W] constant into the same grid layout as activations."""
    c, h, w = array.shape
    slices = math.ceil(c / 4)
    cols, rows = grid(slices, h, w, max_size)
    texels = np.zeros((rows * h, cols * w, 4), np.float32)
    padded = np.zeros((slices * 4, h, w), np.float32)
    padded[:c] = array
    for s in range(slices):
        y0, x0 = (s // cols) * h, (s % cols) * w
        texels[y0:y0 + h, x0:x0 + w, :] = padded[s * 4:s * 4 + 4].transpose(1, 2, 0)
    return Weight(slices, h, w, cols, rows, name=name, data=texels)


def weight_from_texels(name: str, texels: np.ndarray, max_size: int) -> Weight:
    """A plain texture of RGBA texels [height, width, 4], fetched by explicit coordinates."""
    h, w, _ = texels.shape
    if h > max_size or w > max_size:
        raise WebcnnError(f"weight '{name}' needs a {w}x{h} texture, over the limit {max_size}; "
                          "this layer is too large for webcnn")
    return Weight(1, h, w, 1, 1, name=name, data=np.ascontiguousarray(texels, np.float32))


def fetch_function(fn: str, view: View, sampler_prefix: str) -> tuple[str, list]:
    """GLSL `vec4 fn(int s, int y, int x)` reading slice s of a view; returns (source, samplers)."""
    lines = [f"vec4 {fn}(int s, int y, int x) {{"]
    samplers = []
    for k, part in enumerate(view.parts):
        u = f"{sampler_prefix}{k}"
        samplers.append((u, part))
        if k == len(view.parts) - 1:
            lines.append(_divided_sample(u, part, "  ").rstrip("\n"))
        else:
            lines.append(f"  if (s < {part.slices}) {{\n{_divided_sample(u, part, '    ')}  }}")
            lines.append(f"  s -= {part.slices};")
    lines.append("}")
    return "\n".join(lines), samplers


def inv_size(part) -> str:
    """GLSL vec2 of 1 / (width, height) of the texture holding a part: a literal for a weight; for a storage a token,
    replaced once the planner has chosen its texture (compiler.compile, as row_token's)."""
    if isinstance(part, Storage):
        return f"@I{part.id}@"
    return inv_literal(*part.size)


def inv_literal(width: int, height: int) -> str:
    return f"vec2({float_literal(1.0 / width)}, {float_literal(1.0 / height)})"


def texel(sampler: str, inv: str, x: str, y: str, layer: str | None = None) -> str:
    """texture() at the centre of texel (x, y) [of layer]: on SwiftShader texture() costs about 2/3 of a texelFetch
    (see README, Speed and memory), and on these single-level NEAREST textures it returns the texel exactly,
    whatever the level of detail (so also in non-uniform control flow)."""
    uv = f"(vec2(float({x}), float({y})) + 0.5) * {inv}"
    return f"texture({sampler}, {uv})" if layer is None else f"texture({sampler}, vec3({uv}, float({layer})))"


def _slice_texel(part: Part, s_row: str, s_col: str, col: str, y: str) -> tuple[str, str]:
    """(x, y) texel coordinates of texel column `col`, row `y` of the slice at grid row s_row, grid column s_col
    of a part (a part of one column: s_row is the slice)."""
    ty = f"{s_row} * {part.height} + {y}{row_token(part)}"
    return (col, ty) if part.cols == 1 else (f"{s_col} * {part.texel_width} + {col}", ty)


def _divided_sample(sampler: str, part: Part, indent: str) -> str:
    """Statements returning sample() of (s, y, x) with one division per quotient-remainder pair, not two:
    SwiftShader runs integer division lane by lane."""
    p = part.phases
    code = f"{indent}int xq = x / {p}; int xl = x - xq * {p};\n" if p > 1 else ""
    if part.cols > 1:
        code += f"{indent}int sq = s / {part.cols}; int sr = s - sq * {part.cols};\n"
    tx, ty = _slice_texel(part, "sq" if part.cols > 1 else "s", "sr", "xq" if p > 1 else "x", "y")
    return code + f"{indent}return {texel(sampler, inv_size(part), tx, ty, 'xl' if p > 1 else None)};\n"


def sample(sampler: str, part: Part, s: str, y: str, x: str) -> str:
    """texel() of slice s, row y, column x of a part (with P phases: column x / P of layer x % P)."""
    p = part.phases
    col = x if p == 1 else f"({x}) / {p}"
    s_row = f"({s})" if part.cols == 1 else f"(({s}) / {part.cols})"
    tx, ty = _slice_texel(part, s_row, f"(({s}) % {part.cols})", col, y)
    return texel(sampler, inv_size(part), tx, ty, None if p == 1 else f"({x}) % {p}")


def float_literal(x: float) -> str:
    x = float(x)
    if math.isinf(x):
        return "3.4e38" if x > 0 else "-3.4e38"
    if math.isnan(x):
        raise WebcnnError("a NaN constant cannot be baked into a shader")
    r = repr(np.float32(x).item())
    return r if ("." in r or "e" in r) else r + ".0"


def vec4_literal(values) -> str:
    return "vec4(" + ", ".join(float_literal(v) for v in values) + ")"


HEADER = """#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
precision highp sampler2DArray;
"""


def live_lanes(channels: int) -> str:
    """GLSL bvec4: which lanes of a tensor's last channel slice hold channels (the rest are padding). Padding lanes
    are dropped by selecting with it, never by multiplying by 0: they may hold inf or NaN."""
    live = channels - 4 * ((channels - 1) // 4)
    return "bvec4(" + ", ".join("true" if i < live else "false" for i in range(4)) + ")"


def render(functions: list[str], samplers: list, body: str, out: Storage, channels: int, epilogue: str = "",
           phased_body: bool = False) -> str:
    """Assemble a fragment shader: decode (t, oy, ox) of the output texel, run the body, mask padding lanes.

    An output of P phases has P render targets: each fragment computes pixels x0 .. x0 + P - 1. A plain body (which
    sets `v` for (t, oy, ox)) then runs once per pixel; a phased body sets v0 .. v{P-1} itself, sharing fetches."""
    decls = "".join(f"uniform {part.sampler_type} {u};\n" for u, part in samplers)
    P = out.phases
    tw = out.texel_width
    decode = f"  int py = p.y - @Y{out.id}@;\n"
    # x0q: the fragment's texel column in its slice (x0 = x0q * P). Divisions by constants: the JIT turns them into
    # multiplies (a float product or a shift in their place measured 2% slower), unlike divisions by variables.
    if out.cols == 1:
        decode += f"  int t = py / {out.height}; int oy = py - t * {out.height}; int x0q = p.x; int x0 = x0q * {P};\n"
    else:
        decode += (f"  int ty = py / {out.height}; int tx = p.x / {tw};\n"
                   f"  int t = ty * {out.cols} + tx; int oy = py - ty * {out.height};\n"
                   f"  int x0q = p.x - tx * {tw}; int x0 = x0q * {P};\n")
    mask = ""
    if channels % 4:
        # A select, not a multiply: a padding lane can hold inf or NaN (x / 0 against a constant's zero padding
        # lane, log(0), ...), and NaN * 0.0 is NaN, which the 0-weights of the next conv would spread.
        mask = f"  if (t == {out.slices - 1}) v = mix(vec4(0.0), v, {live_lanes(channels)});\n"
    outs = "".join(f"layout(location = {j}) out vec4 outColor{j};\n" for j in range(P))
    main = "\nvoid main() {\n  ivec2 p = ivec2(gl_FragCoord.xy);\n" + decode
    if phased_body:
        main += body
        for j in range(P):
            main += f"  {{ int ox = x0 + {j}; vec4 v = v{j};\n" + epilogue + mask + f"  outColor{j} = v; }}\n"
    else:
        for j in range(P):
            main += f"  {{ int ox = x0 + {j}; vec4 v;\n" + body + epilogue + mask + f"  outColor{j} = v; }}\n"
    return HEADER + outs + decls + "\n".join(functions) + main + "}\n"
