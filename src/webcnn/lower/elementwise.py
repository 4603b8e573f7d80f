"""Unary activations, broadcasting binary ops, Sum/Max/Min/Mean, PRelu and per-channel affine (BatchNorm)."""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..ir import chw, chw_groups
from . import register
from .activations import ACTIVATIONS, activation_glsl
from .core import float_literal
from .misc import gathered_view

BINARY = {
    "Add": "a + b", "Sub": "a - b", "Mul": "a * b", "Div": "a / b",
    "Max": "max(a, b)", "Min": "min(a, b)", "Sum": "a + b", "Mean": "a + b",
    "PRelu": "max(a, 0.0) + b * min(a, 0.0)",
    # GLSL's pow is undefined for a < 0 (and for 0^0): ONNX's, like numpy's, takes the sign from an odd integer
    # exponent (x ** 3) and gives 1 for b = 0.
    "Pow": "mix(pow(abs(a), b) * mix(vec4(1.0), sign(a), equal(mod(b, 2.0), vec4(1.0))), vec4(1.0), "
           "equal(b, vec4(0.0)))",
    # comparisons give 1.0 / 0.0 (ONNX's bool as float); And, Or, Xor and Not take any non-zero as true
    "Greater": "vec4(greaterThan(a, b))", "Less": "vec4(lessThan(a, b))",
    "GreaterOrEqual": "vec4(greaterThanEqual(a, b))", "LessOrEqual": "vec4(lessThanEqual(a, b))",
    "Equal": "vec4(equal(a, b))",
    "And": "vec4(notEqual(a, vec4(0.0))) * vec4(notEqual(b, vec4(0.0)))",
    "Or": "max(vec4(notEqual(a, vec4(0.0))), vec4(notEqual(b, vec4(0.0))))",
    "Xor": "vec4(notEqual(notEqual(a, vec4(0.0)), notEqual(b, vec4(0.0))))",
}


def _operand(lw, node, name, out_shape, fn, const=None):
    """GLSL expression for operand `name` (or the array `const`) broadcast to the output: (expr, {fn: view})."""
    g = lw.g
    const = g.const(name) if const is None else const
    shape = g.shape(name) if const is None else const.shape
    if len(shape) > len(out_shape):
        raise UnsupportedError(node, f"operand '{name}' has higher rank than the output", "")
    aligned = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    if any(a not in (1, o) for a, o in zip(aligned, out_shape)):
        raise UnsupportedError(node, f"broadcasting {list(shape)} to {list(out_shape)}", "numpy broadcasting")
    # Within each of the output's (C, H, W) axis groups the operand either matches or is broadcast as a whole;
    # a group it only partly matches (a per-channel value across a batch) is repeated across that group first.
    target = list(aligned)
    dims = []
    for group in chw_groups(out_shape):
        ours = [aligned[a] for a in group]
        if any(d != 1 for d in ours):
            for a in group:
                target[a] = out_shape[a]
            dims.append(int(np.prod([out_shape[a] for a in group])))
        else:
            dims.append(1)
    if const is not None:
        const = np.broadcast_to(const.astype(np.float32).reshape(aligned), target)
        if const.size == 1:
            return f"vec4({float_literal(const.reshape(-1)[0])})", {}
        view = lw.const_view(node.name + "/" + name, np.ascontiguousarray(const).reshape(dims))
    else:
        view = lw.view(node, name)
        if (view.channels, view.height, view.width) != tuple(dims):
            # The operand's own texture layout does not line up with the output's: copy it into one that does.
            index = np.broadcast_to(np.arange(int(np.prod(shape))).reshape(aligned), target)
            view = gathered_view(lw, node, view, np.ascontiguousarray(index).reshape(dims))
    c, h, w = dims
    out_c = chw(out_shape)[0]
    expr = f"{fn}({'0' if c == 1 else 't'}, {'0' if h == 1 else 'oy'}, {'0' if w == 1 else 'ox'})"
    if c == 1 and out_c > 1:
        expr += ".xxxx"
    return expr, {fn: view}


def _operands(lw, node, names, out_shape):
    """_operand for each name, as X0, X1, ...: ({fetch function: view}, [GLSL expression])."""
    inputs, exprs = {}, []
    for k, name in enumerate(names):
        expr, views = _operand(lw, node, name, out_shape, f"X{k}")
        inputs.update(views)
        exprs.append(expr)
    return inputs, exprs


@register("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "PRelu", "Pow", "Greater", "Less", "GreaterOrEqual",
          "LessOrEqual", "Equal", "And", "Or", "Xor", attrs=[])
def lower_nary(lw, node):
    g = lw.g
    out_shape = g.shape(node.outputs[0])
    names = [n for n in node.inputs if n]
    if all(g.is_const(n) for n in names):
        raise UnsupportedError(node, "all operands are constant", "")
    inputs, exprs = _operands(lw, node, names, out_shape)
    out = lw.output_view(node.outputs[0])
    template = BINARY[node.op]
    body = f"  vec4 a = {exprs[0]};\n"
    for e in exprs[1:]:
        body += f"  {{ vec4 b = {e}; a = {template}; }}\n"
    if node.op == "Mean":
        body += f"  a /= {float(len(exprs))};\n"
    lw.emit(node, body + "  v = a;\n", inputs, out, float(4 * len(exprs)))


@register("Where", attrs=[])
def lower_where(lw, node):
    """Where(condition, X, Y), the condition as 1.0 / 0.0 (a comparison's output) or any non-zero as true."""
    inputs, exprs = _operands(lw, node, node.inputs[:3], lw.g.shape(node.outputs[0]))
    body = f"  v = mix({exprs[2]}, {exprs[1]}, notEqual({exprs[0]}, vec4(0.0)));\n"
    lw.emit(node, body, inputs, lw.output_view(node.outputs[0]), 4.0)


@register(*ACTIVATIONS)
def lower_unary(lw, node):
    from ..optimize import activation_attrs
    known = set(ACTIVATIONS[node.op][0])
    for attr in node.attrs:
        if attr not in known:
            raise UnsupportedError(node, f"attribute '{attr}'", f"{node.op} attributes {sorted(known)}")
    if node.op == "Clip" and any(n and not lw.g.is_const(n) for n in node.inputs[1:]):
        raise UnsupportedError(node, "min/max are computed tensors", "constant min and max")
    x = lw.view(node, node.inputs[0])
    out = lw.output_view(node.outputs[0])
    body = "  v = X(t, oy, ox);\n" + activation_glsl(node, node.op, activation_attrs(lw.g, node))
    lw.emit(node, body, {"X": x}, out, 8.0)


@register("Identity", attrs=[])
def lower_copy(lw, node):
    """Only an output that copies an input is left as Identity after optimize (see drop_noops)."""
    x = lw.view(node, node.inputs[0])
    lw.emit(node, "  v = X(t, oy, ox);\n", {"X": x}, lw.output_view(node.outputs[0]), 1.0)


@register("ChannelAffine", attrs=[])
def lower_affine(lw, node):
    """Inference BatchNormalization not folded into a conv: x * scale + shift per channel (axis 1)."""
    g = lw.g
    shape = g.shape(node.inputs[0])
    inputs, exprs = {"X": lw.view(node, node.inputs[0])}, []
    for fn, name in (("S", node.inputs[1]), ("B", node.inputs[2])):
        per_channel = g.const(name).reshape((1, -1) + (1,) * (len(shape) - 2))
        expr, views = _operand(lw, node, name, shape, fn, per_channel)
        inputs.update(views)
        exprs.append(expr)
    out = lw.output_view(node.outputs[0])
    lw.emit(node, f"  v = X(t, oy, ox) * {exprs[0]} + {exprs[1]};\n", inputs, out, 8.0)
