"""plan: share activation textures between tensors whose lifetimes do not overlap, and cut passes into tiles."""
from __future__ import annotations

import itertools
import random
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


PACKING_MOVES = 500   # orders the local search in assign_textures tries (seeded: the same plan every compile),
PACKING_WORK = 4_000_000   # fewer in large networks: one try costs about (storages)^2 steps


def assign_textures(lw: Lowering, pinned: set[int], reuse: bool = True, moves: int = PACKING_MOVES) -> list[Texture]:
    """Pack storages into textures. Tensors alive at the same time may share a texture at different row offsets,
    except that a pass never reads a texture it writes. Storages are placed one at a time, each where it grows the
    textures least. Inputs and pinned storages (outputs, debug tensors: live to the end of the run) go first, at
    row 0, where the upload, the readback and apps expect them; then the rest largest first, as arena planners do.
    That order can strand a tensor in a texture of its own that another order avoids (the read-write rule makes
    this a colouring problem, not only a packing one), so a seeded local search moves one storage to another place
    in the order and keeps the new order where the total does not grow."""
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

    def pack(order_):
        textures: list[Texture] = []
        for st in order_:
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
        return textures

    best = pack(order)
    best_bytes = sum(t.bytes_fp32 for t in best)
    fixed = sum(st.id in at_origin for st in order)   # the row-0 storages keep their place at the front
    rng = random.Random(0)
    moves = min(moves, PACKING_WORK // len(order) ** 2) if reuse and len(order) - fixed > 1 else 0
    for _ in range(moves):
        i, j = rng.sample(range(fixed, len(order)), 2)
        trial = order[:]
        trial.insert(j, trial.pop(i))
        textures = pack(trial)
        trial_bytes = sum(t.bytes_fp32 for t in textures)
        if trial_bytes <= best_bytes:
            best, best_bytes, order = textures, trial_bytes, trial
    by_id = {st.id: st for st in lw.storages}
    for k, tex in enumerate(best):
        for *_, y0, _, sid in tex.placed:
            by_id[sid].texture, by_id[sid].y0 = k, y0
    return best


MEMORY_TARGET = 1.25   # total texture bytes / lower bound (issue 6)


def trade_speed_for_memory(lw, pinned, textures, lower_and_plan, tries: int = 8, steps: int = 3):
    """Plain textures (graph inputs and outputs) cannot hold the phase-split array textures of the tensors in
    between, so in a small network they can sit idle for most of the run. Where that leaves the plan over
    MEMORY_TARGET, store some inner tensors plain so they can take those idle rows. Each step keeps the one tensor
    (of the `tries` largest) whose plain storage saves most bytes, or, where none saves any alone, the pair of cheap
    ones that saves most (one plain tensor rarely frees a whole texture). Cheap: written by a kernel that gains
    nothing from phases (relayouts, grouped convs), so plain it costs about no speed; once under the target only
    cheap ones are taken. A few dozen re-lowerings at most, only for networks over the target at first; large
    networks, whose plain textures are a small share, rarely get there."""
    def total(plan_):
        lw_, pinned_, textures_ = plan_
        return memory_stats(lw_, textures_, pinned_)
    best, plain = (lw, pinned, textures), set()
    if total(best)["ratio"] <= MEMORY_TARGET:
        return best
    for _ in range(steps):
        stats = total(best)
        over = stats["ratio"] > MEMORY_TARGET   # under it, only cheap trades go on
        if stats["textureBytes"] <= stats["lowerBoundBytes"]:
            break
        lw_ = best[0]
        writer = {p.output.id: p for p in lw_.passes}
        layered = {}   # storage id -> a tensor name; larger first
        for n, v in lw_.views.items():
            st = v.parts[0]
            if len(v.parts) == 1 and isinstance(st, Storage) and st.phases > 1 and n not in plain:
                layered.setdefault(st.id, (n, st))
        layered = sorted(layered.values(), key=lambda nv: (-nv[1].size[0] * nv[1].size[1] * nv[1].phases, nv[1].id))
        cheap = [n for n, st in layered if st.id in writer and not writer[st.id].phased][:tries]
        found = None
        singles = [{n} for n, _ in layered[:tries]] if over else [{n} for n in cheap]
        for sets in (singles, [set(pair) for pair in itertools.combinations(cheap, 2)]):
            trials = [(total(t)["textureBytes"], sorted(names), t) for names in sets
                      for t in [lower_and_plan(plain | names)]]
            if trials:
                found = min(trials, key=lambda x: x[:2])
                if found[0] < stats["textureBytes"]:
                    break
            found = None
        if found is None:
            break
        best, plain = found[2], plain | set(found[1])
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
