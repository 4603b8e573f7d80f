"""lower: every op becomes GPU passes with GLSL ES 3.00 fragment shaders, shapes baked in as constants."""
from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedError, WebcnnError
from ..ir import Graph, Node, chw
from .activations import ACTIVATIONS, activation_glsl
from .core import Pass, Storage, View, Weight, fetch_function, grid, render, weight_from_chw


class Lowering:
    def __init__(self, graph: Graph, max_texture_size: int, phases: int = 1, keep=(), wide_rows: bool = True,
                 plain=()):
        self.g = graph
        self.max_size = max_texture_size
        self.phases = phases        # output pixels per fragment (render targets), 1 = off
        # Graph inputs and outputs (and debug tensors) are uploaded, read back or shown: plain 2-D textures.
        self.keep = set(keep) | set(graph.inputs)
        self.plain = set(plain)     # tensors stored plain though not kept: the planner's memory trade (plan.py)
        # Every storage fills rows as wide as the widest map (in texels): storages then mostly share one width,
        # and the planner packs them into textures by rows.
        widths = [s[-1] for s in (graph.shape(n) for node in graph.nodes for n in node.outputs if n) if len(s) == 4]
        self.row_width = max([-(-w // self.default_phases(w)) for w in widths] + [1])
        # Tensors stored plain by choice (inputs, outputs, the planner's plain trades) fill rows as wide as the widest
        # input or output, so that they can take each other's rows in one texture.
        self.plain_row_width = max([chw(graph.shape(n))[2] for n in (*graph.inputs, *graph.outputs)]
                                   + [self.row_width])
        if not wide_rows:
            self.row_width = self.plain_row_width = 0   # the older layout: slices stacked in one column
        self.views: dict[str, View] = {}
        self.storages: list[Storage] = []
        self.weights: list[Weight] = []
        self.passes: list[Pass] = []
        self.deferred: dict = {}    # tensor -> the conv that computes it inside its reader's pass (lower/conv.py)

    # -- views and storages
    def default_phases(self, width: int) -> int:
        """Intermediate tensors are phase-split (see core.Part) unless too narrow to fill the render targets."""
        return self.phases if width >= max(2, self.phases // 2) else 1

    def new_storage(self, channels: int, height: int, width: int, phases: int | None = None,
                    wide: int | None = None) -> Storage:
        phases = self.default_phases(width) if phases is None else phases
        slices = math.ceil(channels / 4)
        texel_width = -(-width // phases)
        cols, rows = grid(slices, height, texel_width, self.max_size, wide=self.row_width if wide is None else wide)
        st = Storage(slices, height, width, cols, rows, phases, id=len(self.storages))
        self.storages.append(st)
        return st

    def output_view(self, name: str) -> View:
        c, h, w = chw(self.g.shape(name))
        if name in self.keep or name in self.plain:
            view = View(c, h, w, [self.new_storage(c, h, w, 1, self.plain_row_width)])
        else:
            view = View(c, h, w, [self.new_storage(c, h, w)])
        self.views[name] = view
        return view

    def view(self, node: Node, name: str) -> View:
        if name in self.views:
            return self.views[name]
        if self.g.is_const(name):
            raise UnsupportedError(node, f"input '{name}' is a constant where a computed tensor is expected", "")
        raise WebcnnError(f"internal: tensor '{name}' used before it is computed")

    def add_weight(self, weight: Weight) -> Weight:
        self.weights.append(weight)
        return weight

    def const_view(self, name: str, array: np.ndarray) -> View:
        c, h, w = array.shape
        return View(c, h, w, [self.add_weight(weight_from_chw(name, array, self.max_size))])

    # -- passes
    def emit(self, node: Node, body: str, inputs: dict, out: View, flops_per_texel: float,
             extra_functions=(), samplers=(), epilogue: bool = True, phased_body: bool = False) -> None:
        """inputs: GLSL fetch function name -> View. `samplers` are extra (name, Weight) pairs.

        flops_per_texel is per output pixel (4 channels); a fragment of a P-phase output computes P pixels."""
        inputs = self._fit_texture_units(node, dict(inputs), len(samplers), epilogue)
        functions, all_samplers = list(extra_functions), list(samplers)
        for fn, view in inputs.items():
            src, s = fetch_function(fn, view, f"u_{fn}")
            functions.append(src)
            all_samplers += s
        tail = ""
        if epilogue:
            for step in node.epilogue:
                if step[0] == "add":
                    src, s = fetch_function("RESIDUAL", self.view(node, step[1]), "u_res")
                    functions.append(src)
                    all_samplers += s
                    tail += "  v += RESIDUAL(t, oy, ox);\n"
                else:
                    tail += activation_glsl(node, step[1], step[2])
        (st,) = out.parts
        source = render(functions, all_samplers, body, st, out.channels, tail, phased_body)
        self.passes.append(Pass(node.name, node.op, source, all_samplers, st, flops_per_texel * st.phases,
                                bytes_per_texel=16.0 * (1 + len(inputs)) * st.phases,
                                phased=phased_body and st.phases > 1))


    def _fit_texture_units(self, node: Node, inputs: dict, fixed: int, epilogue: bool) -> dict:
        """Zero-copy concats cost one sampler per part; past the unit limit, copy the widest into one texture."""
        residual = [self.view(node, s[1]) for s in node.epilogue if s[0] == "add"] if epilogue else []
        while fixed + sum(len(v.parts) for v in list(inputs.values()) + residual) > MAX_TEXTURE_UNITS:
            fn, widest = max(inputs.items(), key=lambda kv: len(kv[1].parts))
            if len(widest.parts) == 1:
                raise UnsupportedError(node, "more inputs than a fragment shader's 16 texture units", "")
            copy = View(widest.channels, widest.height, widest.width,
                        [self.new_storage(widest.channels, widest.height, widest.width)])
            self.emit(Node("Copy", node.name + "/gather", [], []), "  v = X(t, oy, ox);\n", {"X": widest}, copy, 1.0,
                      epilogue=False)
            inputs[fn] = copy
        return inputs


MAX_TEXTURE_UNITS = 16  # what WebGL2 guarantees per fragment shader


def lower(graph: Graph, max_texture_size: int = 4096, phases: int = 1, keep=(), wide_rows: bool = True,
          plain=()) -> Lowering:
    from . import conv, elementwise, misc, pool, resize  # noqa: F401  (modules register their ops)

    lw = Lowering(graph, max_texture_size, phases, keep, wide_rows, plain)
    for name in graph.inputs:
        lw.output_view(name)
    for node in graph.nodes:
        fn = OPS.get(node.op)
        if fn is None:
            raise UnsupportedError(node, f"op {node.op} has no WebGL lowering", ", ".join(supported_ops()))
        known = KNOWN_ATTRS.get(node.op)
        if known is not None:
            for attr in node.attrs:
                if attr not in known:
                    raise UnsupportedError(node, f"attribute '{attr}'", f"{node.op} attributes {sorted(known)}")
        fn(lw, node)
    return lw


OPS: dict = {}
KNOWN_ATTRS: dict = {}


def register(*ops, attrs=None):
    def wrap(fn):
        for op in ops:
            OPS[op] = fn
            if attrs is not None:
                KNOWN_ATTRS[op] = set(attrs)
        return fn
    return wrap


def supported_ops() -> list[str]:
    from . import conv, elementwise, misc, pool, resize  # noqa: F401
    internal = {"ChannelAffine", "Relayout", "Identity", "ChannelReduce", "Normalize", "SpatialReduce", "BatchMatMul",
                "Silu"}
    folded = ["Identity", "Dropout", "Constant", "Shape and other constant-foldable ops",
              "BatchNormalization", "Gemm", "MatMul (of two computed tensors too)", "Reshape", "Transpose", "Flatten",
              "Squeeze", "Unsqueeze",
              "Expand", "Slice", "Split", "Gather with constant indices", "DepthToSpace", "SpaceToDepth",
              "InstanceNormalization",
              "ReduceMean/ReduceMax/ReduceMin/ReduceSum/ReduceL2 over C, over H, over W, or over H and W",
              "ArgMax/ArgMin over C (the indices as float32)", "Cast to float32",
              "LayerNormalization (over the last axis, the last two, or from the channels on)"]
    return sorted(set(OPS) - internal) + folded
