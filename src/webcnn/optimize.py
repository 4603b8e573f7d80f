"""optimize: fold constants, drop no-ops, canonicalise heads to Conv, fold BatchNorm, fuse epilogues."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from .errors import UnsupportedError, WebcnnError
from .ir import Graph, Node

UNARY_ACTIVATIONS = {"Relu", "LeakyRelu", "Elu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Softplus",
                     "Selu", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Softsign", "Celu",
                     "Mish", "Gelu"}
LAYOUT_OPS = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}
FUSABLE_PRODUCERS = {"Conv", "ConvTranspose", "Add", "Sub", "Mul", "Div", "Sum", "ChannelAffine", "Resize",
                     "AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool"}


def optimize(g: Graph) -> Graph:
    fold_constants(g)
    drop_noops(g)
    canonicalise(g)
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
        if node.op in ("Identity", "Dropout") or node.op == "Expand" and g.shape(node.inputs[0]) == g.shape(node.outputs[0]):
            if len(node.outputs) > 1 and node.outputs[1] and g.consumers(node.outputs[1]):
                raise UnsupportedError(node, "the Dropout mask output is used", "Dropout with its mask unused")
            g.nodes.remove(node)
            src, dst = node.inputs[0], node.outputs[0]
            if dst in g.outputs and src in g.inputs + g.outputs:
                raise UnsupportedError(node, "an output that is a plain copy of an input", "")
            if dst in g.outputs:  # keep the output's name: rename the source instead
                prod = g.producer(src)
                prod.outputs = [dst if o == src else o for o in prod.outputs]
                g.rename_uses(src, dst)
            else:
                g.rename_uses(dst, src)


def canonicalise(g: Graph) -> None:
    """Gemm / MatMul heads become 1x1 Conv, standalone BatchNormalization becomes a per-channel affine."""
    for node in list(g.nodes):
        i = g.nodes.index(node)
        if node.op in ("ReduceMean", "ReduceMax"):
            _spatial_reduce_as_global_pool(g, node)
        elif node.op in ("Slice", "Split"):
            g.nodes[i:i + 1] = _slices_as_relayouts(g, node)
        elif node.op in ("Gemm", "MatMul"):
            g.nodes[i] = _matmul_as_conv(g, node)
        elif node.op == "BatchNormalization":
            scale, shift = _batchnorm_affine(g, node)
            x = node.inputs[0]
            if len(g.shape(x)) < 2:
                raise UnsupportedError(node, "input of rank < 2", "NCHW or NC inputs")
            sname, bname = node.name + "/scale", node.name + "/shift"
            g.tensors[sname] = type(g.tensors[x])(sname, scale.shape, scale)
            g.tensors[bname] = type(g.tensors[x])(bname, shift.shape, shift)
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


def _spatial_reduce_as_global_pool(g: Graph, node: Node) -> None:
    """mean/max over H and W (torch's x.mean((2, 3))) is a global pool, plus a reshape when keepdims=0."""
    shape = g.shape(node.inputs[0])
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        axes = g.const(node.inputs[1])
        axes = None if axes is None else [int(a) for a in axes.reshape(-1)]
    axes = sorted(a % len(shape) for a in axes) if axes is not None else None
    if len(shape) != 4 or axes != [2, 3] or node.attrs.get("noop_with_empty_axes", 0):
        raise UnsupportedError(node, f"reducing axes {axes} of {list(shape)}",
                               f"{node.op} over the H and W axes (2, 3) of an NCHW tensor")
    op = "GlobalAveragePool" if node.op == "ReduceMean" else "GlobalMaxPool"
    out = node.outputs[0]
    if node.attrs.get("keepdims", 1):
        g.nodes[g.nodes.index(node)] = Node(op, node.name, node.inputs[:1], [out])
        return
    pooled = out + "/keepdims"
    g.tensors[pooled] = type(g.tensors[out])(pooled, (shape[0], shape[1], 1, 1))
    i = g.nodes.index(node)
    g.nodes[i:i + 1] = [Node(op, node.name, node.inputs[:1], [pooled]),
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


def _matmul_as_conv(g: Graph, node: Node) -> Node:
    a_name, b_name = node.inputs[0], node.inputs[1]
    a_shape = g.shape(a_name)
    b = g.const(b_name)
    if b is None:
        raise UnsupportedError(node, "the second operand is not a constant", f"{node.op} with constant weights (classifier heads)")
    if node.op == "Gemm":
        if node.attrs.get("transA", 0):
            raise UnsupportedError(node, "transA=1", "Gemm with transA=0 on a [1, K] input")
        b = b.T if node.attrs.get("transB", 0) else b
        b = b * node.attrs.get("alpha", 1.0)
    if not (len(a_shape) == 2 and a_shape[0] == 1 or len(a_shape) == 1) or b.ndim != 2:
        raise UnsupportedError(node, f"input shape {list(a_shape)} with weight shape {list(b.shape)}",
                               f"{node.op} as a classifier head: input [1, K] (or [K]) times a constant [K, N]")
    k, n = b.shape
    weight = np.ascontiguousarray(b.T.reshape(n, k, 1, 1)).astype(np.float32)
    wname = node.name + "/weight"
    g.tensors[wname] = type(g.tensors[b_name])(wname, weight.shape, weight)
    inputs = [a_name, wname]
    if node.op == "Gemm" and len(node.inputs) > 2 and node.inputs[2]:
        c = g.const(node.inputs[2])
        if c is None:
            raise UnsupportedError(node, "input C is not a constant", "Gemm with a constant bias")
        if c.size not in (1, n) or (c.ndim == 2 and c.shape[0] != 1):
            raise UnsupportedError(node, f"bias shape {list(c.shape)}", "a bias of shape [N], [1, N] or scalar")
        bias = (np.broadcast_to(c.reshape(-1), (n,)) * node.attrs.get("beta", 1.0)).astype(np.float32)
        bname = node.name + "/bias"
        g.tensors[bname] = type(g.tensors[b_name])(bname, bias.shape, bias)
        inputs.append(bname)
    return Node("Conv", node.name, inputs, node.outputs, {"kernel_shape": [1, 1], "head": True})


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
        g.tensors[wname] = type(g.tensors[prod.inputs[0]])(wname, w.shape, w.astype(np.float32))
        g.tensors[bname] = type(g.tensors[prod.inputs[0]])(bname, bias.shape, bias.astype(np.float32))
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
    """Runs of Reshape/Transpose/Flatten/Squeeze/Unsqueeze become one Relayout with the steps listed."""
    for node in list(g.nodes):
        if node.op not in LAYOUT_OPS and node.op != "Relayout" or node not in g.nodes:
            continue
        steps = list(node.attrs["steps"]) if node.op == "Relayout" else [_layout_step(g, node)]
        first = node
        last = node
        while True:
            out = last.outputs[0]
            cons = g.consumers(out)
            if len(cons) != 1 or out in g.outputs or cons[0].op not in LAYOUT_OPS:
                break
            last = cons[0]
            steps.append(_layout_step(g, last))
            g.nodes.remove(last)
        relayout = Node("Relayout", first.name, [first.inputs[0]], [last.outputs[0]], {"steps": steps})
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
