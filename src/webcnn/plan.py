"""plan: share activation textures between tensors whose lifetimes do not overlap, and cut passes into tiles."""
from __future__ import annotations

from dataclasses import dataclass

from .lower import Lowering
from .lower.core import Storage


@dataclass(eq=False)
class Texture:
    width: int = 0
    height: int = 0
    layers: int = 1   # > 1: an array texture for phase-split storages (see lower.core.Part)
    placed: list = None  # [(first pass, last pass, first row, rows, storage id)] of the storages in it

    @property
    def bytes_fp32(self) -> int:
        return self.width * self.height * self.layers * 16

    def lowest_free_row(self, start: int, end: int, rows: int) -> int:
        """The lowest first row where `rows` rows are free for passes start..end."""
        taken = sorted((y, y + h) for s, e, y, h, _ in self.placed if not (e < start or end < s))
        y0 = 0
        for a, b in taken:
            if y0 + rows <= a:
                break
            y0 = max(y0, b)
        return y0


def lifetimes(lw: Lowering, pinned: set[int]) -> dict[int, tuple[int, int]]:
    """Storage id -> (first pass writing it, last pass reading it); graph inputs start at -1 (the upload), pinned
    storages (outputs, debug tensors) live to the end."""
    first, last = {}, {}
    end = len(lw.passes)
    for i, p in enumerate(lw.passes):
        first.setdefault(p.output.id, i)
        for _, part in p.samplers:
            if isinstance(part, Storage):
                last[part.id] = max(last.get(part.id, -1), i)
    spans = {}
    for st in lw.storages:
        if st.id in first or st.id in last or st.id in pinned:
            start = first.get(st.id, -1)
            spans[st.id] = (start, end if st.id in pinned else max(last.get(st.id, start), start))
    return spans


def assign_textures(lw: Lowering, pinned: set[int], reuse: bool = True) -> list[Texture]:
    """Pack storages into textures, largest first (as arena planners do). Tensors alive at the same time may share a
    texture at different row offsets, except that a pass never reads a texture it writes. Each storage takes the
    placement that grows the textures least. Inputs and pinned storages (outputs, debug tensors: live to the end of
    the run) sit at row 0, where the upload, the readback and apps expect them."""
    spans = lifetimes(lw, pinned)
    apart: dict[int, set] = {sid: set() for sid in spans}   # storages that must not share a texture
    for p in lw.passes:
        ins = {part.id for _, part in p.samplers if isinstance(part, Storage)}
        for i in ins:
            apart.setdefault(p.output.id, set()).add(i)
            apart.setdefault(i, set()).add(p.output.id)
    at_origin = set(pinned) | {sid for sid, (s, _) in spans.items() if s < 0}
    order = sorted((st for st in lw.storages if st.id in spans),
                   key=lambda st: (st.id not in at_origin, -st.size[0] * st.size[1] * st.phases,
                                   spans[st.id][0], st.id))
    textures: list[Texture] = []
    for st in order:
        start, end = spans[st.id]
        w, h = st.size
        best, best_cost = None, (w * h, 0)   # the cost of a texture of its own
        for tex in (textures if reuse else []):
            if tex.layers != st.phases or any(sid in apart[st.id] for *_, sid in tex.placed):
                continue
            y0 = tex.lowest_free_row(start, end, h)
            if (st.id in at_origin and y0 > 0) or y0 + h > lw.max_size:
                continue
            cost = (max(tex.width, w) * max(tex.height, y0 + h) - tex.width * tex.height, y0)
            if cost < best_cost:
                best, best_cost = (tex, y0), cost
        if best is None:
            best = (Texture(layers=st.phases, placed=[]), 0)
            textures.append(best[0])
        tex, y0 = best
        tex.width, tex.height = max(tex.width, w), max(tex.height, y0 + h)
        tex.placed.append((start, end, y0, h, st.id))
        st.texture = next(i for i, t in enumerate(textures) if t is tex)
        st.y0 = y0
    return textures


MEMORY_TARGET = 1.25   # total texture bytes / lower bound (issue 6)


def trade_speed_for_memory(lw, pinned, textures, lower_and_plan, tries: int = 8, steps: int = 2):
    """Plain textures (graph inputs and outputs) cannot hold the phase-split array textures of the tensors in
    between, so in a small network they can sit idle for most of the run. Where that leaves the plan over
    MEMORY_TARGET, store some inner tensors plain (slower one-pixel kernels write them) so they can take those
    idle rows: greedily the one that saves most bytes, while any does (a few re-lowerings at most). Large networks,
    whose plain textures are a small share, rarely get here."""
    def total(plan_):
        lw_, pinned_, textures_ = plan_
        return memory_stats(lw_, textures_, pinned_)
    best, plain = (lw, pinned, textures), set()
    for _ in range(steps):
        stats = total(best)
        if stats["ratio"] <= MEMORY_TARGET:
            break
        lw_ = best[0]
        layered = sorted(((n, v.parts[0]) for n, v in lw_.views.items()
                          if len(v.parts) == 1 and isinstance(v.parts[0], Storage) and v.parts[0].phases > 1
                          and n not in plain), key=lambda nv: -nv[1].size[0] * nv[1].size[1] * nv[1].phases)
        trials = [(total(t)["textureBytes"], n, t) for n, _ in layered[:tries]
                  for t in [lower_and_plan(plain | {n})]]
        if not trials:
            break
        bytes_, name, trial = min(trials, key=lambda x: x[0])
        if bytes_ >= stats["textureBytes"]:
            break
        best, plain = trial, plain | {name}
    return best


def output_rects(st: Storage) -> list[tuple[int, int, int, int]]:
    full_rows = st.slices // st.cols
    rects = []
    if full_rows:
        rects.append((0, st.y0, st.cols * st.texel_width, full_rows * st.height))
    rest = st.slices - full_rows * st.cols
    if rest:
        rects.append((0, st.y0 + full_rows * st.height, rest * st.texel_width, st.height))
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


def memory_stats(lw: Lowering, textures: list[Texture], pinned: set[int]) -> dict:
    """Texture bytes the plan allocates (fp32) against a lower bound: the most bytes of activations live at any
    one time (storages from their writing pass to their last reader) plus the weights."""
    spans = lifetimes(lw, pinned)
    live_at = [0] * (len(lw.passes) + 2)
    for st in lw.storages:
        if st.id in spans:
            a, b = spans[st.id]
            for i in range(a + 1, b + 2):
                live_at[i] += st.size[0] * st.size[1] * st.phases * 16
    weight_bytes = sum(w.size[0] * w.size[1] * 16 for w in lw.weights)
    activation_bytes = sum(t.bytes_fp32 for t in textures)
    peak = max(live_at)
    total = activation_bytes + weight_bytes
    return {"textureBytes": total, "activationTextureBytes": activation_bytes, "weightTextureBytes": weight_bytes,
            "peakLiveActivationBytes": peak, "lowerBoundBytes": peak + weight_bytes,
            "ratio": round(total / max(1, peak + weight_bytes), 4),
            "activationRatio": round(activation_bytes / max(1, peak), 4)}
