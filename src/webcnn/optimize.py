"""optimize: fold constants, drop no-ops, canonicalise heads to Conv, fold BatchNorm, fuse epilogues."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from .errors import UnsupportedError, WebcnnError
from .ir import Graph, Node, chw_groups

UNARY_ACTIVATIONS = {"Relu", "LeakyRelu", "Elu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Softplus",
                     "Selu", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Softsign", "Celu",
                     "Mish", "Gelu", "Erf", "Round", "Sign", "Silu", "Not", "Sin", "Cos"}
LAYOUT_OPS = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}
FUSABLE_PRODUCERS = {"Conv", "ConvTranspose", "Add", "Sub", "Mul", "Div", "Sum", "ChannelAffine", "Resize",
                     "AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "Relayout", "ChannelReduce"}


def optimize(g: Graph) -> Graph:
    fold_constants(g)
    drop_noops(g)
    canonicalise(g)
    fuse_gelu(g)
    fuse_silu(g)
    fold_batchnorm(g)
    fuse_residual_add(g)
    fuse_activations(g)
    merge_layout_chains(g)
    drop_dead(g)
    return g


def _eval_node(g: Graph, node: Node) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constant with ONNX's reference implementation."""
    inputs = [helper.make_tensor_value_info(f"i{k}", helper.np_dtype_to_tensor_dtype(g.const(n).dtype), g.const(n).shape)
              for k, n in enumerate(node.inputs) if n]
    names, j = [], 0
    for n in node.inputs:
        names.append(f"i{j}" if n else "")
        j += bool(n)
    outs = [f"o{k}" for k in range(len(node.outputs))]
    onode = helper.make_node(node.op, names, outs, **node.attrs)
    graph = helper.make_graph([onode], "fold", inputs, [helper.make_value_info(o, onnx.TypeProto()) for o in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)])
    feeds = {f"i{k}": g.const(n) for k, n in enumerate([n for n in node.inputs if n])}
    try:
        return ReferenceEvaluator(model).run(None, feeds)
    except Exception as e:
        raise WebcnnError(f"could not fold constant node '{node.name}' (op {node.op}): {e}") from None


def fold_constants(g: Graph) -> None:
    kept = []
    for node in g.nodes:
        if node.op == "Shape" and g.tensors[node.inputs[0]].shape is not None:
            shape = np.array(g.shape(node.inputs[0]), dtype=np.int64)
            start, end = node.attrs.get("start", 0), node.attrs.get("end", None)
            values = [shape[start:end]]
        elif node.op == "Size" and g.tensors[node.inputs[0]].shape is not None:
            values = [np.array(np.prod(g.shape(node.inputs[0])), dtype=np.int64)]
        elif node.op != "Dropout" and all(g.is_const(i) for i in node.inputs):
            values = _eval_node(g, node)
        else:
            kept.append(node)
            if any(o and g.tensors[o].shape is None for o in node.outputs):
                _infer_node_shapes(g, node)
            continue
        for name, value in zip(node.outputs, values):
            if name:
                g.tensors[name].const = np.asarray(value)
                g.tensors[name].shape = tuple(np.asarray(value).shape)
    g.nodes = kept
    for out in g.outputs:
        if g.is_const(out):
            raise WebcnnError(f"output '{out}' is a constant (it does not depend on any input); nothing to run")
    for node in g.nodes:
        for out in node.outputs:
            if out and g.tensors[out].shape is None:
                raise WebcnnError(f"could not infer a static shape for '{out}' (output of node '{node.name}', op "
                                  f"{node.op}); pass --input-shape for every input with symbolic dimensions")


def _infer_node_shapes(g: Graph, node: Node) -> None:
    """Shapes ONNX could not infer before folding (e.g. Slice bounds computed from Shape) are inferred now."""
    if any(n and g.tensors[n].shape is None for n in node.inputs):
        return
    inputs, inits = [], []
    for n in dict.fromkeys(i for i in node.inputs if i):
        if g.is_const(n):
            inits.append(numpy_helper.from_array(g.const(n), n))
        else:
            inputs.append(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, g.shape(n)))
    onode = helper.make_node(node.op, node.inputs, node.outputs, **node.attrs)
    graph = helper.make_graph([onode], "infer", inputs, [helper.make_value_info(o, onnx.TypeProto())
                                                         for o in node.outputs if o], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)])
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        return
    for vi in inferred.graph.output:
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims) or vi.type.tensor_type.HasField("shape") and not dims:
            g.tensors[vi.name].shape = tuple(d.dim_value for d in dims)


def drop_noops(g: Graph) -> None:
    for node in list(g.nodes):
        # Every computed tensor is float32 already: a Cast to float (tf2onnx leaves many) changes nothing.
        to_float = node.op == "Cast" and node.attrs.get("to") == onnx.TensorProto.FLOAT
        if node.op in ("Identity", "Dropout") or to_float or \
                node.op == "Expand" and g.shape(node.inputs[0]) == g.shape(node.outputs[0]):
            if node.op == "Dropout":
                _check_inference_dropout(g, node)
            src, dst = node.inputs[0], node.outputs[0]
            if dst in g.outputs and (src in g.inputs + g.outputs or g.producer(src) is None):
                # An output that copies an input (or another output) keeps a copy pass: it needs its own texture.
                g.nodes[g.nodes.index(node)] = Node("Identity", node.name, [src], [dst])
                continue
            g.nodes.remove(node)
            if dst in g.outputs:  # keep the output's name: rename the source instead
                prod = g.producer(src)
                prod.outputs = [dst if o == src else o for o in prod.outputs]
                g.rename_uses(src, dst)
            else:
                g.rename_uses(dst, src)


def _check_inference_dropout(g: Graph, node: Node) -> None:
    """Dropout is a no-op only in inference: no mask read, and no training_mode with a non-zero ratio."""
    if len(node.outputs) > 1 and node.outputs[1] and (g.consumers(node.outputs[1]) or node.outputs[1] in g.outputs):
        raise UnsupportedError(node, "the Dropout mask output is used", "Dropout with its mask unused")
    training = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if training is None:
        return
    if g.const(training) is None:
        raise UnsupportedError(node, "training_mode is a computed tensor", "inference-mode Dropout")
    ratio = g.const(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else np.array(0.5)
    if bool(g.const(training)) and (ratio is None or float(ratio) != 0.0):
        raise UnsupportedError(node, "training_mode=1 drops values at random", "inference-mode Dropout")


def canonicalise(g: Graph) -> None:
    """Gemm / MatMul heads become 1x1 Conv, standalone BatchNormalization becomes a per-channel affine."""
    for node in list(g.nodes):
        i = g.nodes.index(node)
        if node.op in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL2", "ArgMax", "ArgMin"):
            _reduce_as_pool(g, node)
        elif node.op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool") \
                and len(g.shape(node.inputs[0])) == 3:
            g.nodes[i:i + 1] = _1d_as_2d(g, node)
        elif node.op == "InstanceNormalization":
            g.nodes[i:i + 1] = _instance_norm(g, node)
        elif node.op == "LayerNormalization":
            g.nodes[i:i + 1] = _layer_norm(g, node)
        elif node.op in ("DepthToSpace", "SpaceToDepth"):
            g.nodes[i] = _depth_space_relayout(g, node)
        elif node.op == "Expand" and g.shape(node.inputs[0]) != g.shape(node.outputs[0]):
            # torch's expand(): an index map that repeats the size-1 axes (the shape input is folded by now)
            g.nodes[i] = Node("Relayout", node.name, node.inputs[:1], node.outputs[:1],
                              {"steps": [("broadcast", tuple(g.shape(node.outputs[0])))]})
        elif node.op in ("Slice", "Split"):
            g.nodes[i:i + 1] = _slices_as_relayouts(g, node)
        elif node.op == "Gather" and g.const(node.inputs[1]) is not None:
            # x[:, 0] or x[:, [2, 0, 1]] (channel picks, BGR -> RGB): an index map with constant indices
            shape = g.shape(node.inputs[0])
            axis = node.attrs.get("axis", 0) % len(shape)
            indices = g.const(node.inputs[1]).astype(np.int64)
            if np.any(indices >= shape[axis]) or np.any(indices < -shape[axis]):
                raise UnsupportedError(node, f"indices outside axis {axis} of size {shape[axis]}", "indices in range")
            indices = np.where(indices < 0, indices + shape[axis], indices)
            g.nodes[i] = Node("Relayout", node.name, node.inputs[:1], node.outputs[:1],
                              {"steps": [("take", (indices.tolist(), axis))]})
        elif node.op in ("Gemm", "MatMul"):
            g.nodes[i:i + 1] = _matmul_as_conv(g, node)
        elif node.op == "BatchNormalization":
            scale, shift = _batchnorm_affine(g, node)
            x = node.inputs[0]
            if len(g.shape(x)) < 2:
                raise UnsupportedError(node, "input of rank < 2", "NCHW or NC inputs")
            sname, bname = node.name + "/scale", node.name + "/shift"
            g.add_tensor(sname, scale.shape, scale)
            g.add_tensor(bname, shift.shape, shift)
            g.nodes[i] = Node("ChannelAffine", node.name, [x, sname, bname], node.outputs[:1])


def _slices_as_relayouts(g: Graph, node: Node) -> list[Node]:
    """Slice and Split with constant bounds are index maps: one Relayout per output."""
    shape = g.shape(node.inputs[0])
    rank = len(shape)
    if node.op == "Slice":
        params = [g.const(n) if n else None for n in (node.inputs[1:] + [""] * 4)[:4]]
        if params[0] is None or params[1] is None or any(n and g.const(n) is None for n in node.inputs[1:]):
            raise UnsupportedError(node, "computed starts/ends/axes/steps", "Slice with constant bounds")
        starts, ends = params[0].reshape(-1), params[1].reshape(-1)
        axes = params[2].reshape(-1) if params[2] is not None else np.arange(len(starts))
        steps = params[3].reshape(-1) if params[3] is not None else np.ones(len(starts), np.int64)
        index = [slice(0, d, 1) for d in shape]
        for a, b, e, st in zip(axes, starts, ends, steps):
            index[int(a) % rank] = slice(*slice(int(b), int(e), int(st)).indices(shape[int(a) % rank]))
        return [Node("Relayout", node.name, node.inputs[:1], node.outputs[:1],
                     {"steps": [("slice", tuple((s.start, s.stop, s.step) for s in index))]})]
    axis = node.attrs.get("axis", 0) % rank
    outputs = [o for o in node.outputs]
    if len(node.inputs) > 1 and node.inputs[1]:
        sizes = g.const(node.inputs[1])
        if sizes is None:
            raise UnsupportedError(node, "computed split sizes", "Split with constant sizes")
        sizes = [int(v) for v in sizes.reshape(-1)]
    elif "split" in node.attrs:
        sizes = list(node.attrs["split"])
    else:
        sizes = [g.shape(o)[axis] for o in outputs]
    nodes, start = [], 0
    for k, (out, size) in enumerate(zip(outputs, sizes)):
        index = [(0, d, 1) for d in shape]
        index[axis] = (start, start + size, 1)
        start += size
        if out:
            nodes.append(Node("Relayout", f"{node.name}/{k}", node.inputs[:1], [out], {"steps": [("slice", tuple(index))]}))
    return nodes


def _row_width(length: int, widest: int = 2048) -> int:
    """The largest divisor of `length` up to `widest`: a row length for laying a long axis out as rows."""
    return next(w for w in range(min(length, widest), 0, -1) if length % w == 0)


def _instance_norm(g: Graph, node: Node) -> list[Node]:
    """InstanceNormalization (style-transfer generators; GroupNorm exports as one between reshapes) from global
    pools: m = mean(x), d = x - m, y = d / sqrt(mean(d * d) + eps) * scale + B, per channel over H and W."""
    x, shape = node.inputs[0], g.shape(node.inputs[0])
    scale, bias = g.const(node.inputs[1]), g.const(node.inputs[2])
    if scale is None or bias is None:
        raise UnsupportedError(node, "scale or B is computed", "constant scale and B")
    if len(shape) not in (3, 4):
        raise UnsupportedError(node, f"input of rank {len(shape)}", "[N, C, H, W] or [N, C, L] input")
    names = {}

    def tensor(suffix, dims, value=None):
        names[suffix] = g.add_tensor(f"{node.name}/{suffix}", dims, value)
        return names[suffix]

    # [N, C, L] as [N, C, L / w, w]: GroupNorm's L (channels per group x H x W) is often wider than a texture
    flat = shape
    if len(shape) == 3:
        row = _row_width(shape[2])
        flat = (shape[0], shape[1], shape[2] // row, row)
    pooled = flat[:2] + (1, 1)
    nodes = []
    if len(shape) == 3:
        nodes.append(Node("Relayout", node.name + "/to_2d", [x], [tensor("x", flat)], {"steps": [("reshape", flat)]}))
        x = names["x"]
    eps = tensor("eps", (), np.array(node.attrs.get("epsilon", 1e-5), np.float32))
    y = node.outputs[0] if len(shape) == 4 else tensor("y", flat)
    nodes += [Node("GlobalAveragePool", node.name + "/mean", [x], [tensor("m", pooled)]),
              Node("Sub", node.name + "/sub", [x, names["m"]], [tensor("d", flat)]),
              Node("Mul", node.name + "/square", [names["d"], names["d"]], [tensor("d2", flat)]),
              Node("GlobalAveragePool", node.name + "/var", [names["d2"]], [tensor("v", pooled)]),
              Node("Add", node.name + "/eps", [names["v"], eps], [tensor("ve", pooled)]),
              Node("Sqrt", node.name + "/sqrt", [names["ve"]], [tensor("sd", pooled)]),
              Node("Div", node.name + "/normalise", [names["d"], names["sd"]], [tensor("n", flat)]),
              Node("ChannelAffine", node.name, [names["n"], tensor("scale", scale.shape, scale.astype(np.float32)),
                                                tensor("shift", bias.shape, bias.astype(np.float32))], [y])]
    if len(shape) == 3:
        nodes.append(Node("Relayout", node.name + "/from_2d", [y], node.outputs[:1], {"steps": [("reshape", shape)]}))
    return nodes


def _layer_norm(g: Graph, node: Node) -> list[Node]:
    """LayerNormalization (ConvNeXt's over the channels of an NHWC permute, or over [C, H, W]): a Normalize pass
    over the axes from `axis` on, then Scale and B as broadcasting Mul and Add (fused into it as epilogues)."""
    x, shape = node.inputs[0], g.shape(node.inputs[0])
    if len(node.outputs) > 1 and any(node.outputs[1:]):
        raise UnsupportedError(node, "the Mean or InvStdDev output is used", "LayerNormalization's Y output only")
    consts = [g.const(n) if n else None for n in node.inputs[1:3]]
    if consts[0] is None or (len(node.inputs) > 2 and node.inputs[2] and consts[1] is None):
        raise UnsupportedError(node, "Scale or B is computed", "constant Scale and B")
    axis = node.attrs.get("axis", -1) % len(shape)
    normed = node.name + "/normalised"
    g.add_tensor(normed, shape)
    nodes = [Node("Normalize", node.name, [x], [normed], {"axis": axis, "epsilon": node.attrs.get("epsilon", 1e-5)})]
    scale, bias = consts
    scaled = node.outputs[0] if bias is None else node.name + "/scaled"
    if bias is not None:
        g.add_tensor(scaled, shape)
    for name, value in ((node.name + "/scale", scale), (node.name + "/bias", bias)):
        if value is not None:
            g.add_tensor(name, value.shape, value.astype(np.float32))
    nodes.append(Node("Mul", node.name + "/mul", [normed, node.name + "/scale"], [scaled]))
    if bias is not None:
        nodes.append(Node("Add", node.name + "/add", [scaled, node.name + "/bias"], node.outputs[:1]))
    return nodes


def _depth_space_relayout(g: Graph, node: Node) -> Node:
    """PixelShuffle (DepthToSpace, CRD or DCR) and PixelUnshuffle (SpaceToDepth): a reshape, transpose, reshape."""
    shape = g.shape(node.inputs[0])
    if len(shape) != 4:
        raise UnsupportedError(node, f"input of rank {len(shape)}", "NCHW input")
    (n, c, h, w), b = shape, node.attrs["blocksize"]
    mode = node.attrs.get("mode", "DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if node.op == "SpaceToDepth":
        steps = [("reshape", (n, c, h // b, b, w // b, b)), ("transpose", (0, 3, 5, 1, 2, 4))]
    elif mode == "CRD":
        steps = [("reshape", (n, c // (b * b), b, b, h, w)), ("transpose", (0, 1, 4, 2, 5, 3))]
    elif mode == "DCR":
        steps = [("reshape", (n, b, b, c // (b * b), h, w)), ("transpose", (0, 3, 4, 1, 5, 2))]
    else:
        raise UnsupportedError(node, f"mode='{mode}'", "DCR, CRD")
    steps.append(("reshape", tuple(g.shape(node.outputs[0]))))
    return Node("Relayout", node.name, node.inputs[:1], node.outputs[:1], {"steps": steps})


def _1d_as_2d(g: Graph, node: Node) -> list[Node]:
    """A 1-D conv or pool (or global pool) over [N, C, L] runs as the 2-D one over [N, C, 1, L], between two
    relayouts."""
    (n, c, length), out_shape = g.shape(node.inputs[0]), g.shape(node.outputs[0])
    x2, y2 = node.name + "/2d_in", node.name + "/2d_out"
    g.add_tensor(x2, (n, c, 1, length))
    g.add_tensor(y2, (out_shape[0], out_shape[1], 1, out_shape[2]))
    attrs = dict(node.attrs)
    for key, pad_value in (("kernel_shape", 1), ("strides", 1), ("dilations", 1), ("output_padding", 0),
                           ("output_shape", 1)):
        if key in attrs:
            attrs[key] = [pad_value] + list(attrs[key])
    if "pads" in attrs:
        attrs["pads"] = [0, attrs["pads"][0], 0, attrs["pads"][1]]
    inputs = [x2] + list(node.inputs[1:])
    if node.op in ("Conv", "ConvTranspose"):
        w = g.const(node.inputs[1])
        if w is None:
            raise UnsupportedError(node, "the weight is not a constant", "constant weights")
        wname = node.name + "/2d_weight"
        g.add_tensor(wname, w.shape[:2] + (1,) + w.shape[2:], w.reshape(w.shape[:2] + (1,) + w.shape[2:]))
        inputs[1] = wname
    return [Node("Relayout", node.name + "/to_2d", [node.inputs[0]], [x2], {"steps": [("reshape", g.shape(x2))]}),
            Node(node.op, node.name, inputs, [y2] + node.outputs[1:], attrs),
            Node("Relayout", node.name + "/from_2d", [y2], node.outputs[:1], {"steps": [("reshape", out_shape)]})]


def _reduce_as_pool(g: Graph, node: Node) -> None:
    """mean/max over H and W (torch's x.mean((2, 3))) is a global pool; mean/max/min/sum/L2 over the channels (CBAM's
    x.mean(1, keepdim=True), a hand-written LayerNorm2d, F.normalize) a ChannelReduce; over H, W or both otherwise
    a SpatialReduce; plus a reshape when keepdims=0."""
    shape = g.shape(node.inputs[0])
    # axis 1 lies along the texture's channels: NCHW, a [1, C] vector or [1, T, C] tokens (see ir.chw)
    channel_axis = len(shape) == 4 or len(shape) in (2, 3) and shape[0] == 1
    if node.op in ("ArgMax", "ArgMin"):   # a segmentation net's class map: one axis, default 0
        axis = node.attrs.get("axis", 0) % max(len(shape), 1)
        if not channel_axis or axis != 1:
            raise UnsupportedError(node, f"{node.op} over axis {axis} of {list(shape)}",
                                   f"{node.op} over the channel axis (1) of an NCHW tensor or a [1, C] vector")
        node.attrs = {"axes": [1], "keepdims": node.attrs.get("keepdims", 1),
                      "last": node.attrs.get("select_last_index", 0)}
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        axes = g.const(node.inputs[1])
        axes = None if axes is None else [int(a) for a in axes.reshape(-1)]
    axes = sorted(a % len(shape) for a in axes) if axes is not None else None
    if channel_axis and len(shape) > 2 and node.op not in ("ArgMax", "ArgMin") \
            and axes is not None and len(axes) > 1 and 1 in axes \
            and not node.attrs.get("noop_with_empty_axes", 0):
        # over the channels and H and/or W (per-sample normalisation, a global max): the channels first, then the
        # rest. Each of these reductions composes with itself (a mean of equal-sized means, an L2 of L2s).
        keepdims = node.attrs.get("keepdims", 1)
        rest_axes = [a for a in axes if a != 1 and shape[a] != 1]   # (size-1 axes, such as the batch, are no-ops)
        if not rest_axes:
            node.attrs = {"axes": [1], "keepdims": keepdims}
            node.inputs = node.inputs[:1]
        else:
            inner = node.outputs[0] + "/channels"
            g.add_tensor(inner, (shape[0], 1) + tuple(shape[2:]))
            first = Node(node.op, node.name + "/channels", node.inputs[:1], [inner], {"axes": [1], "keepdims": 1})
            rest = Node(node.op, node.name, [inner], node.outputs[:1], {"axes": rest_axes, "keepdims": keepdims})
            i = g.nodes.index(node)
            g.nodes[i:i + 1] = [first, rest]
            _reduce_as_pool(g, first)
            node = rest
        return _reduce_as_pool(g, node)
    spatial = len(shape) == 4 and axes == [2, 3] and node.op in ("ReduceMean", "ReduceMax")
    # H only, W only (a CRNN's x.mean(2), a mean over tokens [1, T, C]), or H and W for the other reductions: the
    # texture's rows and columns, each lane on its own
    groups = chw_groups(shape) if len(shape) >= 3 else ([], [], [])
    along = (axes and node.op not in ("ArgMax", "ArgMin") and not spatial
             and set(axes) <= set(groups[1]) | set(groups[2]) and len(shape) in (3, 4))
    # the channels of NCHW, the features of a [1, C] vector (F.normalize of an embedding, a classifier's argmax) or
    # the tokens of [1, T, C]
    channels = axes == [1] and channel_axis
    if not (spatial or along or channels) or node.attrs.get("noop_with_empty_axes", 0):
        raise UnsupportedError(node, f"reducing axes {axes} of {list(shape)}",
                               f"{node.op} over the channel axis (1) of an NCHW tensor or a [1, C] vector"
                               + ("" if node.op in ("ArgMax", "ArgMin") else
                                  ", or over its H axis, its W axis or both (the last two axes of a rank-3 or -4 "
                                  "tensor)"))
    if spatial:
        op, attrs, kept = ("GlobalAveragePool" if node.op == "ReduceMean" else "GlobalMaxPool"), {}, shape[:2] + (1, 1)
    elif along:
        op = "SpatialReduce"
        attrs = {"reduce": node.op, "rows": bool(set(axes) & set(groups[1])), "cols": bool(set(axes) & set(groups[2]))}
        kept = tuple(1 if a in axes else d for a, d in enumerate(shape))
    else:
        op, attrs, kept = "ChannelReduce", {"reduce": node.op}, (shape[0], 1) + tuple(shape[2:])
        if node.op in ("ArgMax", "ArgMin"):
            attrs["last"] = node.attrs["last"]
    out = node.outputs[0]
    if node.attrs.get("keepdims", 1):
        g.nodes[g.nodes.index(node)] = Node(op, node.name, node.inputs[:1], [out], attrs)
        return
    pooled = out + "/keepdims"
    g.add_tensor(pooled, kept)
    i = g.nodes.index(node)
    g.nodes[i:i + 1] = [Node(op, node.name, node.inputs[:1], [pooled], attrs),
                        Node("Reshape", node.name + "/squeeze", [pooled], [out])]


def _batchnorm_affine(g, node):
    if node.attrs.get("training_mode", 0):
        raise UnsupportedError(node, "training_mode=1", "inference-mode BatchNormalization")
    if len([o for o in node.outputs if o]) > 1:
        raise UnsupportedError(node, "running mean/var outputs are used", "inference-mode BatchNormalization")
    params = [g.const(n) for n in node.inputs[1:5]]
    if any(p is None for p in params):
        raise UnsupportedError(node, "scale, bias, mean and var must be constants", "constant BatchNormalization parameters")
    gamma, beta, mean, var = (p.astype(np.float64) for p in params)
    scale = gamma / np.sqrt(var + node.attrs.get("epsilon", 1e-5))
    return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)


def _matmul_as_conv(g: Graph, node: Node) -> list[Node]:
    a_name, b_name = node.inputs[0], node.inputs[1]
    a_shape = g.shape(a_name)
    b = g.const(b_name)
    if b is None and node.op == "MatMul":
        return _batched_matmul(g, node)
    if b is None:
        return _gemm_of_computed(g, node)
    b = b.astype(np.float32)
    trans_a = node.op == "Gemm" and node.attrs.get("transA", 0)
    if node.op == "Gemm":
        b = (b.T if node.attrs.get("transB", 0) else b) * node.attrs.get("alpha", 1.0)
    b = b.reshape(-1, 1) if b.ndim == 1 else b  # [K] weights: a matrix of one column, squeezed by the output shape
    k_a = a_shape[0] if trans_a else a_shape[-1]
    if b.shape[-2] != k_a:
        raise UnsupportedError(node, f"input shape {list(a_shape)} with weight shape {list(b.shape)}", "")
    k, n = b.shape[-2:]
    bias, full_bias = None, None
    if node.op == "Gemm" and len(node.inputs) > 2 and node.inputs[2]:
        c = g.const(node.inputs[2])
        if c is None:
            raise UnsupportedError(node, "input C is not a constant", "Gemm with a constant bias")
        c = c.astype(np.float32) * node.attrs.get("beta", 1.0)
        if c.size in (1, n) and (c.ndim < 2 or c.shape[0] == 1):
            bias = np.broadcast_to(c.reshape(-1), (n,)).astype(np.float32)
        else:
            full_bias = c
    # With a full [M, N] bias the product goes to a tensor of its own, and an Add makes the output.
    product = node.outputs[0] if full_bias is None else node.outputs[0] + "/matmul"
    if full_bias is not None:
        g.add_tensor(product, g.shape(node.outputs[0]))
    if not trans_a and b.ndim == 2 and (len(a_shape) == 1 or len(a_shape) == 2 and a_shape[0] == 1):
        # A classifier head: the [1, K] vector already lies along the channels, so a plain 1x1 conv.
        conv_in, conv_out, groups = a_name, product, 1
        attrs = {"kernel_shape": [1, 1], "head": True}
        weight = np.ascontiguousarray(b.T.reshape(n, k, 1, 1))
        nodes = []
    else:
        nodes, conv_in, conv_out, groups, weight = _matmul_relayouts(g, node, a_shape, b, trans_a, product)
        attrs = {"kernel_shape": [1, 1], "group": groups}
    wname = node.name + "/weight"
    g.add_tensor(wname, weight.shape, weight.astype(np.float32))
    inputs = [conv_in, wname]
    if bias is not None:
        bname = node.name + "/bias"
        bias = np.tile(bias, groups)
        g.add_tensor(bname, bias.shape, bias)
        inputs.append(bname)
    nodes.insert(1 if nodes else 0, Node("Conv", node.name, inputs, [conv_out], attrs))
    if full_bias is not None:
        cname = node.name + "/C"
        g.add_tensor(cname, full_bias.shape, full_bias)
        nodes.append(Node("Add", node.name + "/bias", [product, cname], [node.outputs[0]]))
    return nodes


def _gemm_of_computed(g: Graph, node: Node) -> list[Node]:
    """Gemm with a computed B: alpha * op(A) @ op(B) + beta * C as transposes, a batched product, a scale and an
    add (each left out where it is a no-op)."""
    nodes, operands = [], []
    for k, flag in ((0, "transA"), (1, "transB")):
        name = node.inputs[k]
        if node.attrs.get(flag, 0):
            shape = g.shape(name)
            new = f"{node.name}/{'ab'[k]}T"
            if g.is_const(name):
                g.add_tensor(new, shape[::-1], np.ascontiguousarray(g.const(name).T))
            else:
                g.add_tensor(new, shape[::-1])
                nodes.append(Node("Relayout", new, [name], [new], {"steps": [("transpose", (1, 0))]}))
            name = new
        operands.append(name)
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
    c = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    out = node.outputs[0]

    def tensor(suffix, shape, value=None):
        return g.add_tensor(f"{node.name}/{suffix}", shape, value)

    product = out if alpha == 1.0 and c is None else tensor("gemm", g.shape(out))
    nodes += _batched_matmul(g, Node("MatMul", node.name, operands, [product]))
    if alpha != 1.0:
        scaled = out if c is None else tensor("scaled", g.shape(out))
        nodes.append(Node("Mul", node.name + "/alpha", [product, tensor("alpha", (), np.array(alpha, np.float32))],
                          [scaled]))
        product = scaled
    if c is not None:
        if beta != 1.0 and g.is_const(c):
            c = tensor("betaC", g.shape(c), (g.const(c) * beta).astype(np.float32))
        elif beta != 1.0:
            scaled_c = tensor("betaC", g.shape(c))
            nodes.append(Node("Mul", node.name + "/beta", [c, tensor("beta", (), np.array(beta, np.float32))],
                              [scaled_c]))
            c = scaled_c
        nodes.append(Node("Add", node.name + "/C", [product, c], [out]))
    return nodes


def _batched_matmul(g: Graph, node: Node) -> list[Node]:
    """A product of two computed tensors (attention): both become [1, G, rows, cols], so the batch lies along the
    channels and one texel holds four batches' values at one (row, col); a BatchMatMul pass sums over K."""
    a_name, b_name = node.inputs[:2]
    a_shape, b_shape = tuple(g.shape(a_name)), tuple(g.shape(b_name))
    # numpy's 1-D operands: a row vector on the left, a column on the right (the output shape drops the axis)
    a_2d = (1,) + a_shape if len(a_shape) == 1 else a_shape
    b_2d = b_shape + (1,) if len(b_shape) == 1 else b_shape
    *ba, m, k = a_2d
    *bb, kb, n = b_2d
    if k != kb:
        raise UnsupportedError(node, f"shapes {list(a_shape)} and {list(b_shape)} do not chain", "")
    try:
        batch = tuple(np.broadcast_shapes(tuple(ba), tuple(bb)))
    except ValueError:
        raise UnsupportedError(node, f"batch shapes {list(ba)} and {list(bb)} do not broadcast", "") from None
    groups = int(np.prod(batch, dtype=np.int64))
    nodes = []

    def batched(name, shape, shape_2d, rows, cols, tag):
        target = (1, groups, rows, cols)
        if shape == target:
            return name
        full = batch + (rows, cols)
        new = f"{node.name}/{tag}"
        if g.is_const(name):
            value = np.broadcast_to(g.const(name).astype(np.float32).reshape(shape_2d), full)
            g.add_tensor(new, target, value.reshape(target))
            return new
        steps = [("reshape", shape_2d)] if shape != shape_2d else []
        steps += ([("broadcast", full)] if shape_2d != full else []) + [("reshape", target)]
        g.add_tensor(new, target)
        nodes.append(Node("Relayout", new, [name], [new], {"steps": steps}))
        return new

    a = batched(a_name, a_shape, a_2d, m, k, "a")
    b = batched(b_name, b_shape, b_2d, k, n, "b")
    out_shape = tuple(g.shape(node.outputs[0]))
    product = node.outputs[0] if out_shape == (1, groups, m, n) else node.name + "/product"
    if product != node.outputs[0]:
        g.add_tensor(product, (1, groups, m, n))
    nodes.append(Node("BatchMatMul", node.name, [a, b], [product]))
    if product != node.outputs[0]:
        nodes.append(Node("Relayout", node.name + "/out", [product], node.outputs[:1],
                          {"steps": [("reshape", out_shape)]}))
    return nodes


def _matmul_relayouts(g, node, a_shape, b, trans_a, product):
    """A general [..., M, K] x constant [..., K, N] as a 1x1 conv: K moves onto the channels and M onto the height.

    Batches that share one weight matrix fold into M; batched weights become conv groups.
    Returns (nodes [relayout in, relayout out], conv input, conv output, groups, conv weight)."""
    steps, shape = [], tuple(a_shape)
    if trans_a:
        steps.append(("transpose", (1, 0)))
        shape = shape[::-1]
    if len(shape) == 1:
        shape = (1,) + shape
    *ba, m, k = shape
    *bb, _, n = b.shape
    bo = tuple(np.broadcast_shapes(tuple(ba), tuple(bb)))
    if all(d == 1 for d in bb):
        groups, rows, w = 1, int(np.prod(ba, dtype=np.int64)) * m, b.reshape(1, k, n)
    else:
        groups, rows = int(np.prod(bo, dtype=np.int64)), m
        if tuple(ba) != bo:
            steps.append(("broadcast", bo + (m, k)))
        w = np.broadcast_to(b, bo + (k, n)).reshape(groups, k, n)
    steps += [("reshape", (groups, rows, k)), ("transpose", (0, 2, 1)), ("reshape", (1, groups * k, rows, 1))]
    conv_in, conv_out = node.name + "/rows", node.name + "/cols"
    g.add_tensor(conv_in, (1, groups * k, rows, 1))
    g.add_tensor(conv_out, (1, groups * n, rows, 1))
    back = [("reshape", (groups, n, rows)), ("transpose", (0, 2, 1)), ("reshape", g.shape(node.outputs[0]))]
    nodes = [Node("Relayout", node.name + "/to_conv", [node.inputs[0]], [conv_in], {"steps": steps}),
             Node("Relayout", node.name + "/from_conv", [conv_out], [product], {"steps": back})]
    weight = np.ascontiguousarray(w.transpose(0, 2, 1)).reshape(groups * n, k, 1, 1)
    return nodes, conv_in, conv_out, groups, weight


def _single_use(g: Graph, name: str) -> bool:
    return name not in g.outputs and len(g.consumers(name)) == 1 and \
        sum(n.inputs.count(name) for n in g.nodes) == 1


def fold_batchnorm(g: Graph) -> None:
    for node in list(g.nodes):
        if node.op != "ChannelAffine":
            continue
        prod = g.producer(node.inputs[0])
        if prod is None or prod.op not in ("Conv", "ConvTranspose") or prod.epilogue or \
                not _single_use(g, node.inputs[0]) or g.const(prod.inputs[1]) is None:
            continue
        scale, shift = g.const(node.inputs[1]), g.const(node.inputs[2])
        w = g.const(prod.inputs[1]).astype(np.float32)
        cout = w.shape[0] if prod.op == "Conv" else w.shape[1] * prod.attrs.get("group", 1)
        if scale.shape[0] != cout:
            continue
        if prod.op == "Conv":
            w = w * scale.reshape(-1, 1, 1, 1)
        else:
            groups = prod.attrs.get("group", 1)
            wg = w.reshape(groups, w.shape[0] // groups, w.shape[1], *w.shape[2:])
            w = (wg * scale.reshape(groups, 1, -1, *([1] * (w.ndim - 2)))).reshape(w.shape)
        bias = g.const(prod.inputs[2]) if len(prod.inputs) > 2 and prod.inputs[2] else np.zeros(cout, np.float32)
        bias = bias * scale + shift
        wname, bname = prod.name + "/folded_w", prod.name + "/folded_b"
        g.add_tensor(wname, w.shape, w.astype(np.float32))
        g.add_tensor(bname, bias.shape, bias.astype(np.float32))
        prod.inputs = [prod.inputs[0], wname, bname]
        prod.outputs = [node.outputs[0]]
        g.nodes.remove(node)


def fuse_residual_add(g: Graph) -> None:
    """conv -> Add(other) becomes one pass: the conv adds `other` in its epilogue."""
    for node in list(g.nodes):
        if node.op != "Add" or len(node.inputs) != 2:
            continue
        for mine, other in (node.inputs, node.inputs[::-1]):
            prod = g.producer(mine)
            if prod is None or prod.op not in ("Conv", "ConvTranspose") or prod.epilogue or \
                    not _single_use(g, mine) or g.is_const(other) or g.shape(other) != g.shape(mine) or \
                    g.shape(node.outputs[0]) != g.shape(mine):
                continue
            prod.epilogue.append(("add", other))
            prod.outputs = [node.outputs[0]]
            # The fused node runs where the Add ran, after `other` exists.
            g.nodes.remove(prod)
            g.nodes[g.nodes.index(node)] = prod
            break


def fuse_gelu(g: Graph) -> None:
    """How torch.onnx exports nn.GELU() below opset 20 becomes one Gelu (fused into its producer later):
    x * 0.5 * (1 + Erf(x / sqrt 2)), five passes over the tensor, and the tanh form
    x * 0.5 * (1 + Tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))), eight, become none."""
    def scalar(name, value, tol=1e-6):
        c = g.const(name)
        return c is not None and c.size == 1 and abs(float(c.reshape(-1)[0]) - value) <= tol * max(1.0, abs(value))

    def only_reader(name, op):
        cons = g.consumers(name)
        return cons[0] if _single_use(g, name) and cons[0].op == op else None

    def other(node, name):
        return node.inputs[1] if node.inputs[0] == name else node.inputs[0]

    def single_producer(name, op):
        node = g.producer(name)
        return node if node is not None and node.op == op and _single_use(g, name) else None

    def scaled(name, factor):
        """The node computing name = operand * factor (or operand / (1 / factor)), and its operand."""
        node = g.producer(name)
        if node is None or not _single_use(g, name):
            return None, None
        if node.op == "Div" and scalar(node.inputs[1], 1 / factor):
            return node, node.inputs[0]
        if node.op == "Mul":
            for k in (0, 1):
                if scalar(node.inputs[k], factor):
                    return node, node.inputs[1 - k]
        return None, None

    def cube_of(name, x):
        """The nodes computing name = x^3 (Pow(x, 3), or x * (x * x) in any order)."""
        node = single_producer(name, "Pow") or single_producer(name, "Mul")
        if node is None:
            return None
        if node.op == "Pow":
            return [node] if node.inputs[0] == x and scalar(node.inputs[1], 3.0) else None
        if x not in node.inputs:
            return None
        square = single_producer(other(node, x), "Mul")
        return [square, node] if square is not None and square.inputs == [x, x] else None

    def tail(inner, x):
        """1 + inner, times x and 0.5 in either order, or times (0.5 * x): the nodes, last one last, or None."""
        add = only_reader(inner, "Add")
        if add is None or not scalar(other(add, inner), 1.0):
            return None
        m1 = only_reader(add.outputs[0], "Mul")
        if m1 is None:
            return None
        half, half_x = scaled(other(m1, add.outputs[0]), 0.5)
        if half is not None and half_x == x:
            return [half, add, m1]
        m2 = only_reader(m1.outputs[0], "Mul")
        if m2 is None:
            return None
        first, second = other(m1, add.outputs[0]), other(m2, m1.outputs[0])
        return [add, m1, m2] if first == x and scalar(second, 0.5) or scalar(first, 0.5) and second == x else None

    def replace(nodes, x, approximate):
        last = nodes[-1]
        for n in nodes[:-1]:
            g.nodes.remove(n)
        g.nodes[g.nodes.index(last)] = Node("Gelu", last.name, [x], last.outputs[:1], {"approximate": approximate})

    for erf in [n for n in g.nodes if n.op == "Erf"]:
        scale, x = scaled(erf.inputs[0], 2 ** -0.5)
        rest = scale and tail(erf.outputs[0], x)
        if rest:
            replace([scale, erf] + rest, x, "none")
    for tanh in [n for n in g.nodes if n.op == "Tanh"]:
        scale, inner = scaled(tanh.inputs[0], (2 / np.pi) ** 0.5)
        add = scale and single_producer(inner, "Add")
        if add is None:
            continue
        for x in add.inputs:
            cubic, cube = scaled(other(add, x), 0.044715)
            powers = cubic and cube_of(cube, x)
            rest = powers and tail(tanh.outputs[0], x)
            if rest:
                replace(powers + [cubic, add, scale, tanh] + rest, x, "tanh")
                break


def fuse_silu(g: Graph) -> None:
    """x * Sigmoid(x), how torch.onnx exports nn.SiLU (EfficientNet, YOLO), becomes one activation: two passes over
    the tensor become none once it joins its producer's epilogue."""
    for sigmoid in [n for n in g.nodes if n.op == "Sigmoid"]:
        x, s = sigmoid.inputs[0], sigmoid.outputs[0]
        cons = g.consumers(s)
        if not _single_use(g, s) or cons[0].op != "Mul" or sorted(cons[0].inputs) != sorted([x, s]):
            continue
        g.nodes.remove(sigmoid)
        mul = cons[0]
        g.nodes[g.nodes.index(mul)] = Node("Silu", mul.name, [x], mul.outputs[:1])


def fuse_activations(g: Graph) -> None:
    for node in list(g.nodes):
        if node.op not in UNARY_ACTIVATIONS:
            continue
        if node.op == "Clip" and any(n and not g.is_const(n) for n in node.inputs[1:]):
            continue
        prod = g.producer(node.inputs[0])
        if prod is None or prod.op not in FUSABLE_PRODUCERS or not _single_use(g, node.inputs[0]):
            continue
        prod.epilogue.append(("act", node.op, activation_attrs(g, node)))
        prod.outputs = [node.outputs[0]]
        g.nodes.remove(node)


def activation_attrs(g: Graph, node: Node) -> dict:
    attrs = dict(node.attrs)
    if node.op == "Clip" and g.opset >= 11:
        lo = g.const(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
        hi = g.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        attrs["min"] = float(lo) if lo is not None else -3.4e38
        attrs["max"] = float(hi) if hi is not None else 3.4e38
    return attrs


def merge_layout_chains(g: Graph) -> None:
    """Runs of Reshape/Transpose/Flatten/Squeeze/Unsqueeze (and Relayouts) become one Relayout with the steps listed."""
    for node in list(g.nodes):
        if node.op not in LAYOUT_OPS and node.op != "Relayout" or node not in g.nodes:
            continue
        steps = list(node.attrs["steps"]) if node.op == "Relayout" else [_layout_step(g, node)]
        first = node
        last = node
        while True:
            out = last.outputs[0]
            cons = g.consumers(out)
            # (a Relayout that canonicalise made, e.g. GroupNorm's rows, joins too: no wide tensor in between)
            if len(cons) != 1 or out in g.outputs or not (
                    cons[0].op in LAYOUT_OPS or cons[0].op == "Relayout" and not cons[0].epilogue):
                break
            last = cons[0]
            steps += last.attrs["steps"] if last.op == "Relayout" else [_layout_step(g, last)]
            g.nodes.remove(last)
        relayout = Node("Relayout", first.name, [first.inputs[0]], [last.outputs[0]], {"steps": steps})
        relayout.epilogue = first.epilogue   # a fused activation commutes with moving elements around
        g.nodes[g.nodes.index(first)] = relayout


def _layout_step(g: Graph, node: Node):
    if node.op == "Transpose":
        return ("transpose", tuple(node.attrs.get("perm", range(len(g.shape(node.inputs[0])))[::-1])))
    return ("reshape", tuple(g.shape(node.outputs[0])))


def drop_dead(g: Graph) -> None:
    live = set(g.outputs)
    kept = []
    for node in reversed(g.nodes):
        if any(o in live for o in node.outputs):
            kept.append(node)
            live.update(i for i in node.inputs if i)
            live.update(s[1] for s in node.epilogue if s[0] == "add")
    g.nodes = kept[::-1]
