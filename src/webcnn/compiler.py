"""The whole pipeline: import -> optimize -> lower -> plan -> bundle."""
from __future__ import annotations

import re

from . import bundle as bundle_mod
from . import plan
from .errors import WebcnnError
from .importer import import_onnx, load_model
from .lower import lower
from .lower.core import inv_literal
from .optimize import optimize

DEFAULT_MAX_TEXTURE_SIZE = 4096
DEFAULT_TILE_FLOPS = 8e6
DEFAULT_PHASES = 8  # output pixels per fragment = render targets (WebGL2 guarantees 4; desktop GPUs, SwiftShader 8)


def fit_phases(graph, phases: int) -> int:
    """`phases`, or one fewer where that pads no feature map and `phases` does: MobileNetV2's maps 28, 14 and 7
    wide leave pixels of their last fragments idle at P = 8, none at 7 (README, Speed and memory). Not with
    transposed convs or resizes, whose phased kernels want P a multiple of their stride or factor."""
    if phases <= 4 or any(n.op in ("ConvTranspose", "Resize", "Upsample") for n in graph.nodes):
        return phases
    widths = {graph.shape(o)[-1] for n in graph.nodes for o in n.outputs if o and len(graph.shape(o)) == 4}
    widths = {w for w in widths if w >= max(2, (phases - 1) // 2)}   # narrower maps are stored plain
    if any(w % phases for w in widths) and not any(w % (phases - 1) for w in widths):
        return phases - 1
    return phases


def compile(model, example_input=None, input_shapes=None, *, max_texture_size=DEFAULT_MAX_TEXTURE_SIZE,
            max_tile_flops=DEFAULT_TILE_FLOPS, debug_tensors=False, phases=DEFAULT_PHASES, wide_rows=True,
            out_dir=None) -> bundle_mod.Bundle:
    """Compile an onnx.ModelProto, a .onnx path, a torch.nn.Module (+ example input) or a saved TorchScript / torch.export
    file (input shape from input_shapes) into a Bundle.

    debug_tensors keeps every intermediate tensor readable (no texture sharing), for per-layer verification.
    phases: output pixels per fragment (render targets); 1 gives the older one-pixel kernels.
    wide_rows=False gives the older layout (slices in one column), for before/after benchmarks.
    """
    proto = load_model(model, example_input, input_shapes)
    graph = optimize(import_onnx(proto, input_shapes))
    if not graph.nodes:
        raise WebcnnError("the model has no operations left to run after optimisation")
    phases = fit_phases(graph, phases)
    keep = list(graph.outputs)
    if debug_tensors:
        keep += [n for node in graph.nodes for n in node.outputs if n not in keep]

    def lower_and_plan(plain=()):
        lw = lower(graph, max_texture_size, phases, keep, wide_rows, plain)
        # Outputs and debug tensors need their own texture to outlive the run.
        pinned = {p.id for n in keep if n in lw.views for p in lw.views[n].parts if hasattr(p, "id")}
        return lw, pinned, plan.assign_textures(lw, pinned, reuse=not debug_tensors)

    lw, pinned, textures = lower_and_plan()
    if not debug_tensors and phases > 1:
        lw, pinned, textures = plan.trade_speed_for_memory(lw, pinned, textures, lower_and_plan)
    keep = [n for n in keep if n in lw.views]
    rows = {st.id: st.y0 for st in lw.storages}
    inv_sizes = {st.id: inv_literal(textures[st.texture].width, textures[st.texture].height)
                 for st in lw.storages if st.texture >= 0}
    for p in lw.passes:   # the row offsets the shaders were written with as tokens (see lower.core.Storage)
        p.source = re.sub(r"@Y(\d+)@", lambda m: str(rows[int(m.group(1))]), p.source)
        p.source = re.sub(r"@I(\d+)@", lambda m: inv_sizes[int(m.group(1))], p.source)
    pass_tiles = [plan.tiles(p.output, p.flops_per_texel, max_tile_flops) for p in lw.passes]
    info = {"opset": graph.opset, "producer": proto.producer_name or "", "maxTextureSize": max_texture_size}
    result = bundle_mod.build(graph, lw, textures, pass_tiles, info,
                              debug_tensors=[n for n in keep if n not in graph.outputs])
    result.manifest["totals"]["memory"] = plan.memory_stats(lw, textures, pinned)
    if out_dir is not None:
        result.save(out_dir)
    return result
