"""Every elementwise activation's GLSL, in one table. `v` is the vec4 being transformed."""
from ..errors import UnsupportedError
from .core import float_literal as f

# Each entry: (attributes with defaults, GLSL statement updating v). Forms avoid exp overflow producing NaN.
ACTIVATIONS = {
    "Relu": ({}, "v = max(v, 0.0);"),
    "LeakyRelu": ({"alpha": 0.01}, "v = max(v, 0.0) + {alpha} * min(v, 0.0);"),
    "Elu": ({"alpha": 1.0}, "v = max(v, 0.0) + {alpha} * (exp(min(v, 0.0)) - 1.0);"),
    "Selu": ({"alpha": 1.6732632423543772, "gamma": 1.0507009873554805},
             "v = {gamma} * (max(v, 0.0) + {alpha} * (exp(min(v, 0.0)) - 1.0));"),
    "Celu": ({"alpha": 1.0}, "v = max(v, 0.0) + min(vec4(0.0), {alpha} * (exp(min(v, 0.0) / {alpha}) - 1.0));"),
    "Clip": ({"min": -3.4e38, "max": 3.4e38}, "v = clamp(v, {min}, {max});"),
    "Sigmoid": ({}, "v = 1.0 / (1.0 + exp(-v));"),
    "Tanh": ({}, "v = tanh(clamp(v, -15.0, 15.0));"),
    "HardSigmoid": ({"alpha": 0.2, "beta": 0.5}, "v = clamp({alpha} * v + {beta}, 0.0, 1.0);"),
    "HardSwish": ({}, "v = v * clamp(v / 6.0 + 0.5, 0.0, 1.0);"),
    "Softplus": ({}, "v = max(v, 0.0) + log(1.0 + exp(-abs(v)));"),
    "Softsign": ({}, "v = v / (1.0 + abs(v));"),
    "Mish": ({}, "v = v * tanh(clamp(max(v, 0.0) + log(1.0 + exp(-abs(v))), -15.0, 15.0));"),
    "Gelu": ({"approximate": "none"}, "{gelu}"),
    "Erf": ({}, "{erf}"),   # torch.onnx exports nn.GELU() below opset 20 as x * 0.5 * (1 + Erf(x / sqrt 2))
    "Abs": ({}, "v = abs(v);"),
    "Neg": ({}, "v = -v;"),
    "Exp": ({}, "v = exp(v);"),
    "Log": ({}, "v = log(v);"),
    "Sqrt": ({}, "v = sqrt(v);"),
    "Reciprocal": ({}, "v = 1.0 / v;"),
    "Floor": ({}, "v = floor(v);"),
    "Ceil": ({}, "v = ceil(v);"),
    "Round": ({}, "v = roundEven(v);"),   # ONNX rounds halves to even
    "Sign": ({}, "v = sign(v);"),
    "Not": ({}, "v = vec4(equal(v, vec4(0.0)));"),
    "Sin": ({}, "v = sin(v);"),   # positional encodings, SIREN-style layers
    "Cos": ({}, "v = cos(v);"),
    "Silu": ({}, "v = v / (1.0 + exp(-v));"),   # internal: x * Sigmoid(x) as exported, fused (see fuse_silu)
}

# erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), since GLSL ES has no erf: e = erf(|z|).
ERF_ABS = ("vec4 k = 1.0 / (1.0 + 0.3275911 * z);"
           " vec4 e = 1.0 - (((((1.061405429 * k - 1.453152027) * k) + 1.421413741) * k - 0.284496736) * k"
           " + 0.254829592) * k * exp(-z * z);")
GELU_ERF = "{ vec4 z = abs(v) * 0.70710678; " + ERF_ABS + " v = 0.5 * v * (1.0 + sign(v) * e); }"
ERF = "{ vec4 z = abs(v); " + ERF_ABS + " v = sign(v) * e; }"
GELU_TANH = "v = 0.5 * v * (1.0 + tanh(clamp(0.7978845608 * (v + 0.044715 * v * v * v), -15.0, 15.0)));"


def activation_glsl(node, op: str, attrs: dict) -> str:
    defaults, template = ACTIVATIONS[op]
    values = {}
    for key, default in defaults.items():
        value = attrs.get(key, default)
        values[key] = value if isinstance(value, (str, bytes)) else f(value)   # Gelu's approximate: bytes from ONNX
    if op == "Gelu":
        mode = values["approximate"]
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in ("none", "tanh"):
            raise UnsupportedError(node, f"approximate='{mode}'", "approximate='none' or 'tanh'")
        return "  " + (GELU_TANH if mode == "tanh" else GELU_ERF) + "\n"
    if op == "Erf":
        return "  " + ERF + "\n"
    return "  " + template.format(**values) + "\n"
