"""import: ONNX (or PyTorch: a module, a TorchScript file or a torch.export program, through torch.onnx.export) to
our Graph, with static shapes."""
from __future__ import annotations

import io
import os
import warnings

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from .errors import WebcnnError
from .ir import Graph, Node, Tensor

# Opsets 22 to 25 only add element types (bfloat16, float8, int4, ...) to the ops webcnn lowers.
MIN_OPSET, MAX_OPSET = 11, 25


TORCH_SUFFIXES = (".pt", ".pth", ".pt2", ".ts", ".torchscript")


def load_model(source, example_input=None, input_shapes=None) -> onnx.ModelProto:
    """Accept an onnx.ModelProto, a path to a .onnx file, a torch.nn.Module with an example input, or a path to a
    saved TorchScript module (torch.jit.save) or torch.export program (torch.export.save); the example input of a
    saved PyTorch file comes from input_shapes (the only-input key '' or one entry), else from the program itself."""
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise WebcnnError(f"model file not found: {path}")
        if path.lower().endswith(TORCH_SUFFIXES):
            return _load_torch_file(path, input_shapes)
        try:
            with open(path, "rb") as f:
                data = f.read()
            model = onnx.load_model_from_string(data)
        except Exception as e:  # protobuf raises its own DecodeError subclasses
            raise WebcnnError(f"{path} is not a readable ONNX model (truncated or not ONNX?): {e}. "
                              "Re-export the model and check the file was copied completely.") from None
        if not model.graph.node and not model.graph.input:
            raise WebcnnError(f"{path} holds no ONNX graph (empty or not an ONNX file). Re-export the model.")
        _load_external_data(model, os.path.dirname(path))
        return model
    if _is_torch_module(source):
        return _export_torch(source, example_input)
    raise WebcnnError(f"cannot compile a {type(source).__name__}: pass an onnx.ModelProto, a path to a .onnx file, "
                      "or a torch.nn.Module with an example input")


def _load_external_data(model, base_dir):
    try:
        onnx.load_external_data_for_model(model, base_dir)
    except Exception as e:
        raise WebcnnError(f"the model's external weight data could not be read from {base_dir}: {e}") from None


def _is_torch_module(obj) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(obj, torch.nn.Module)


def _load_torch_file(path, input_shapes) -> onnx.ModelProto:
    try:
        import torch
    except ImportError:
        raise WebcnnError(f"{path} is a PyTorch file, and compiling one needs PyTorch: pip install torch, or export "
                          "the model to ONNX where PyTorch is installed") from None
    shapes = list((input_shapes or {}).values())
    example = tuple(torch.zeros(shape) for shape in shapes) or None
    if path.lower().endswith(".pt2"):
        try:
            program = torch.export.load(path)
        except Exception as e:
            raise WebcnnError(f"{path} is not a readable torch.export program ({type(e).__name__}: {e}); save one "
                              "with torch.export.save(torch.export.export(model, (example,)), path)") from None
        recorded = tuple(program.example_inputs[0]) if program.example_inputs else None
        if example is None:
            example = recorded
        if example is None:
            raise WebcnnError(f"{path} records no example input: pass --input-shape 1,3,H,W")
        return _export_program(program, example, path, recorded)
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception:
        raise WebcnnError(_not_torchscript(path, torch)) from None
    if example is None:
        raise WebcnnError(f"{path} is a TorchScript module, which does not record its input shape: pass "
                          "--input-shape 1,3,H,W (or input_shapes={'': (1, 3, H, W)})")
    return _export_torch(module, example, path)


def _export_program(program, example, path, recorded) -> onnx.ModelProto:
    """torch.export programs go through the dynamo exporter (onnxscript): the TorchScript one cannot trace them."""
    import logging

    import torch

    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise WebcnnError(f"{path} is a torch.export program; exporting it needs onnxscript: pip install onnxscript") from None
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)   # notices about torchvision ops it cannot register
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            onnx_program = torch.onnx.export(program, example, dynamo=True, opset_version=18, verbose=False)
        except Exception as e:
            shapes = [list(t.shape) for t in recorded or ()]
            hint = (f" It was exported for input shape(s) {shapes}: give that --input-shape, or re-export it with "
                    "dynamic shapes." if shapes and shapes != [list(t.shape) for t in example] else "")
            raise WebcnnError(f"exporting the torch.export program {path} to ONNX failed: "
                              f"{str(e).splitlines()[0][:300]}.{hint}") from None
    return onnx_program.model_proto


def _not_torchscript(path, torch) -> str:
    """Why a .pt file is not something webcnn can compile, and what to save instead."""
    fix = ("save the network itself with torch.jit.save(torch.jit.trace(model, example), path) or "
           "torch.export.save(torch.export.export(model, (example,)), 'model.pt2'), or export it to ONNX")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        # Never unpickle arbitrary objects: a pickled nn.Module could run any code on load.
        return (f"{path} is neither a TorchScript module nor a torch.export program (a pickled Python object, or "
                f"not a PyTorch file): {fix}")
    if isinstance(content, dict):
        return f"{path} holds only weights (a state_dict of {len(content)} entries), not the network: {fix}"
    return f"{path} holds a {type(content).__name__}, not a network: {fix}"


def _export_torch(module, example_input, origin=None) -> onnx.ModelProto:
    import torch

    if example_input is None:
        raise WebcnnError("compiling a torch.nn.Module needs an example input tensor, e.g. torch.zeros(1, 3, 224, 224)")
    origin = origin or type(module).__name__
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    module = module.eval()
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        try:
            torch.onnx.export(module, args, buf, opset_version=17, dynamo=False,
                              input_names=[f"input{i}" if i else "input" for i in range(len(args))])
        except Exception as e:
            raise WebcnnError(f"torch.onnx.export failed for {origin}: {e}") from None
    return onnx.load_model_from_string(buf.getvalue())


def parse_input_shapes(specs) -> dict[str, tuple[int, ...]]:
    """'x=1,3,224,224' or '1,3,224,224' (for the only input) -> {name: shape}; '' is the only-input key."""
    shapes = {}
    for spec in specs or []:
        name, _, dims = spec.rpartition("=") if "=" in spec else ("", "", spec)
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise WebcnnError(f"bad --input-shape '{spec}': expected NAME=1,3,224,224 or 1,3,224,224") from None
        if not shape or any(d <= 0 for d in shape):
            raise WebcnnError(f"bad --input-shape '{spec}': every dimension must be a positive integer")
        shapes[name] = shape
    return shapes


def _graph_inputs(model):
    init_names = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in init_names]


def fix_input_shapes(model: onnx.ModelProto, input_shapes: dict) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inputs = _graph_inputs(model)
    input_shapes = dict(input_shapes or {})
    if "" in input_shapes:
        if len(inputs) != 1:
            raise WebcnnError(f"--input-shape without a name is ambiguous: the model has inputs "
                              f"{[i.name for i in inputs]}; use NAME=dims")
        input_shapes[inputs[0].name] = input_shapes.pop("")
    unknown = set(input_shapes) - {i.name for i in inputs}
    if unknown:
        raise WebcnnError(f"--input-shape names unknown input(s) {sorted(unknown)}; the model's inputs are "
                          f"{[i.name for i in inputs]}")
    for inp in inputs:
        ttype = inp.type.tensor_type
        if not inp.type.HasField("tensor_type"):
            raise WebcnnError(f"input '{inp.name}'{_readers(model, inp.name)} is not a tensor; webcnn takes float32 "
                              "tensor inputs")
        if ttype.elem_type != onnx.TensorProto.FLOAT:
            dtype = onnx.TensorProto.DataType.Name(ttype.elem_type)
            raise WebcnnError(f"input '{inp.name}'{_readers(model, inp.name)} has element type {dtype}; webcnn takes "
                              "float32 inputs. Export the model with a float32 input (convert in the app before "
                              "calling run).")
        dims = ttype.shape.dim
        if inp.name in input_shapes:
            shape = input_shapes[inp.name]
            if dims and len(dims) != len(shape):
                raise WebcnnError(f"--input-shape for '{inp.name}' has rank {len(shape)} but the model's input has "
                                  f"rank {len(dims)}")
            for i, d in enumerate(dims):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != shape[i]:
                    raise WebcnnError(f"--input-shape for '{inp.name}' sets dimension {i} to {shape[i]} but the "
                                      f"model fixes it at {d.dim_value}")
            del ttype.shape.dim[:]
            for d in shape:
                ttype.shape.dim.add().dim_value = d
        else:
            if not ttype.HasField("shape"):
                raise WebcnnError(f"input '{inp.name}' has no shape; pass --input-shape {inp.name}=1,3,H,W")
            for i, d in enumerate(dims):
                if d.HasField("dim_value") and d.dim_value == 0:
                    raise WebcnnError(f"input '{inp.name}'{_readers(model, inp.name)} is empty (dimension {i} is 0); "
                                      "webcnn runs tensors with at least one element")
                if not (d.HasField("dim_value") and d.dim_value > 0):
                    sym = d.dim_param or "?"
                    raise WebcnnError(f"input '{inp.name}' has a symbolic dimension {i} ('{sym}'); webcnn compiles "
                                      f"for fixed shapes: pass --input-shape {inp.name}=1,3,224,224 (your sizes)")
    # Shapes recorded for intermediate tensors may be stale once inputs change: infer them afresh.
    del model.graph.value_info[:]
    for out in model.graph.output:
        for d in out.type.tensor_type.shape.dim:
            d.Clear()
    return model


def _readers(model, name) -> str:
    """' (read by node 'n' (op Conv))', to name the op in an error about one of its inputs."""
    for node in model.graph.node:
        if name in node.input:
            return f" (read by node '{node.name or node.output[0]}' (op {node.op_type}))"
    return ""


def opset_of(model) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise WebcnnError("the model imports no standard ONNX opset (ai.onnx); webcnn needs opset 11 to 25")


def import_onnx(model: onnx.ModelProto, input_shapes=None) -> Graph:
    opset = opset_of(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        ops = sorted({n.op_type for n in model.graph.node})
        listed = ", ".join(ops[:8]) + (", ..." if len(ops) > 8 else "")
        raise WebcnnError(f"the model uses ONNX opset {opset} (ops {listed}); webcnn supports opsets {MIN_OPSET} to "
                          f"{MAX_OPSET}. Re-export with opset_version=17 or convert with onnx.version_converter.")
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise WebcnnError(f"unsupported node '{node.name}' (op {node.domain}::{node.op_type}): custom-domain "
                              "ops cannot run in webcnn; re-export with standard ONNX ops")
    _check_references(model)
    model = fix_input_shapes(model, input_shapes)
    try:
        # A first, lenient inference fills in outputs declared without a shape, which the checker requires.
        model = shape_inference.infer_shapes(model)
    except Exception:
        pass
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0]
        raise WebcnnError(f"the ONNX model is invalid: {first}. Fix the exporter output "
                          "(onnx.checker.check_model reports the same).") from None
    try:
        model = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0]
        raise WebcnnError(f"ONNX shape inference failed: {first}. Check the weights' shapes match the ops "
                          "(a wrong-rank or wrong-size weight causes this).") from None

    tensors: dict[str, Tensor] = {}
    for init in model.graph.initializer:
        tensors[init.name] = Tensor(init.name, tuple(init.dims), numpy_helper.to_array(init))
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        if vi.name in tensors or not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            tensors[vi.name] = Tensor(vi.name, tuple(d.dim_value for d in tt.shape.dim))

    nodes = []
    for i, n in enumerate(model.graph.node):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        name = n.name or f"{n.op_type}_{i}"
        if n.op_type == "Constant":
            value = _constant_value(n, attrs, name)
            tensors[n.output[0]] = Tensor(n.output[0], tuple(value.shape), value)
            continue
        nodes.append(Node(n.op_type, name, list(n.input), list(n.output), attrs))
        for out in n.output:
            if out and out not in tensors:
                tensors[out] = Tensor(out, None)  # shape unknown until folding
    inputs = [i.name for i in _graph_inputs(model)]
    outputs = [o.name for o in model.graph.output]
    for name in inputs:
        if name not in tensors or tensors[name].shape is None:
            raise WebcnnError(f"input '{name}' has no static shape; pass --input-shape")
    used = {i for n in nodes for i in n.inputs if i}
    for name in used:
        if name not in tensors:
            producer = next((n for n in nodes if name in n.inputs), None)
            raise WebcnnError(f"node '{producer.name}' (op {producer.op}) reads '{name}', which no initializer, "
                              "input or node provides (a missing initializer?). Re-export the model.")
    return Graph(tensors, nodes, inputs, outputs, opset)


def _check_references(model) -> None:
    """Every tensor a node reads must come from an input, an initializer or an earlier node."""
    known = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}
    for k, node in enumerate(model.graph.node):
        for name in node.input:
            if name and name not in known:
                later = any(name in n.output for n in model.graph.node[k:])
                what = "a later node (the graph is not topologically sorted)" if later else \
                    "no initializer, input or node (a missing initializer?)"
                raise WebcnnError(f"node '{node.name or node.op_type}' (op {node.op_type}) reads '{name}', which "
                                  f"comes from {what}. Re-export the model.")
        known.update(node.output)


def _constant_value(node, attrs, name) -> np.ndarray:
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.array(attrs[key], dtype=dtype)
    raise WebcnnError(f"Constant node '{name}' has no supported value attribute (value, value_float(s), value_int(s))")
