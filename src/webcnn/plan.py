"""plan: share activation textures between tensors whose lifetimes do not overlap, and cut passes into tiles."""
from __future__ import annotations

from dataclasses import dataclass

from .lower import Lowering
from .lower.core import Storage


@dataclass(eq=False)
class Texture:
    width: int = 0
    height: int = 0
    busy_until: int = -2


def assign_textures(lw: Lowering, pinned: set[int], reuse: bool = True) -> list[Texture]:
    """Greedy interval packing: each storage takes the free texture that needs the least growth."""
    first = {st.id: None for st in lw.storages}
    last = {st.id: -1 for st in lw.storages}
    end = len(lw.passes)
    for i, p in enumerate(lw.passes):
        if first[p.output.id] is None:
            first[p.output.id] = i
        for _, part in p.samplers:
            if isinstance(part, Storage):
                last[part.id] = max(last[part.id], i)
    for sid in pinned:
        last[sid] = end
    textures: list[Texture] = []
    # Graph inputs are written by the upload before the first pass.
    order = sorted((st for st in lw.storages if first[st.id] is not None or last[st.id] >= 0 or st.id in pinned),
                   key=lambda st: (first[st.id] if first[st.id] is not None else -1, st.id))
    for st in order:
        start = first[st.id] if first[st.id] is not None else -1
        w, h = st.size
        best, best_cost = None, None
        if reuse and st.id not in pinned:
            for tex in textures:
                if tex.busy_until >= start:
                    continue
                cost = max(tex.width, w) * max(tex.height, h) - tex.width * tex.height
                if best is None or (cost, tex.width * tex.height) < best_cost:
                    best, best_cost = tex, (cost, tex.width * tex.height)
        if best is None:
            best = Texture()
            textures.append(best)
        best.width, best.height = max(best.width, w), max(best.height, h)
        best.busy_until = max(last[st.id], start)
        st.texture = next(i for i, t in enumerate(textures) if t is best)
    return textures


def output_rects(st: Storage) -> list[tuple[int, int, int, int]]:
    full_rows = st.slices // st.cols
    rects = []
    if full_rows:
        rects.append((0, 0, st.cols * st.width, full_rows * st.height))
    rest = st.slices - full_rows * st.cols
    if rest:
        rects.append((0, full_rows * st.height, rest * st.width, st.height))
    return rects


def tiles(st: Storage, flops_per_texel: float, max_tile_flops: float) -> list[list[int]]:
    """Bands of whole rows, each under max_tile_flops; a row that alone is too costly is cut into columns."""
    out = []
    for x0, y0, w, h in output_rects(st):
        row_cost = max(flops_per_texel, 1.0) * w
        if row_cost <= max_tile_flops:
            band = max(1, int(max_tile_flops // row_cost))
            for y in range(y0, y0 + h, band):
                out.append([x0, y, w, min(band, y0 + h - y)])
        else:
            span = max(1, int(max_tile_flops // max(flops_per_texel, 1.0)))
            for y in range(y0, y0 + h):
                for x in range(x0, x0 + w, span):
                    out.append([x, y, min(span, x0 + w - x), 1])
    return out
