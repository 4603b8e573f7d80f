"""ONNX's own backend node test cases, compiled by webcnn and run in headless Chromium.

The onnx wheel ships the case generators, not the data: the cases are built in-process with
`collect_testcases()`. Only single-node cases of the ops in OPS are run; the `_expanded` variants test
the ops of a function body (CastLike, Where, ReduceSum, ...), not the op itself.

webcnn compiles weights, shapes, pads and scales into the bundle, so the inputs in FROZEN become
initializers holding the case's own values; every other input is fed at run time.

    .venv/bin/python -m pytest tests/test_onnx_backend.py -q -n 2
"""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import webcnn
from webcnn.errors import WebcnnError

from conftest import assert_close

OPS = ["Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "PRelu", "Elu", "Clip", "Sigmoid", "Tanh",
       "HardSigmoid", "HardSwish", "Softplus", "Add", "Sub", "Mul", "Div", "Sum", "Concat", "MaxPool", "AveragePool",
       "GlobalAveragePool", "GlobalMaxPool", "Resize", "Upsample", "Pad", "Softmax", "Flatten", "Reshape", "Gemm",
       "MatMul", "Transpose", "LRN", "Dropout", "Identity"]

# Input positions that webcnn takes as compile-time constants, per op.
FROZEN = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "BatchNormalization": (1, 2, 3, 4), "Clip": (1, 2), "Gemm": (1, 2),
    "MatMul": (1,), "Resize": (1, 2, 3), "Upsample": (1,), "Pad": (1, 2, 3), "Reshape": (1,), "Dropout": (1, 2),
}

EXCLUDED = {
}


def _collect():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators of unrelated ops warn about overflowing casts
        cases = collect_testcases()
    return {c.name: c for c in cases if "_expanded" not in c.name and len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in OPS}


CASES = _collect()


def _freeze(case):
    """The case's model with its FROZEN inputs turned into initializers, and the feeds for the rest."""
    model = onnx.ModelProto.FromString(case.model.SerializeToString())
    node = model.graph.node[0]
    frozen_positions = FROZEN.get(node.op_type, ())
    present = [name for name in node.input if name]
    (inputs, outputs), = case.data_sets
    values = dict(zip(present, inputs))
    frozen = {name for k, name in enumerate(node.input) if name and k in frozen_positions}
    feeds = {}
    kept = []
    for vi in model.graph.input:
        if vi.name in frozen:
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(values[vi.name]), vi.name))
        else:
            kept.append(vi)
            feeds[vi.name] = values[vi.name]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    expected = {vi.name: out for vi, out in zip(model.graph.output, outputs)}
    return model, feeds, expected


@pytest.mark.parametrize("name", sorted(set(CASES) - set(EXCLUDED)))
def test_case(name, browser, tmp_path):
    model, feeds, expected = _freeze(CASES[name])
    webcnn.compile(model, out_dir=tmp_path)
    got, _, _ = browser.run_bundle(tmp_path, {k: np.asarray(v, np.float32) for k, v in feeds.items()})
    for out, ref in expected.items():
        assert_close(f"{name}/{out}", got[out], ref)


@pytest.mark.parametrize("name", sorted(EXCLUDED))
def test_excluded_case_is_refused(name, tmp_path):
    model, _, _ = _freeze(CASES[name])
    op = model.graph.node[0].op_type
    with pytest.raises(WebcnnError) as info:
        webcnn.compile(model, out_dir=tmp_path)
    assert op in str(info.value), f"the error does not name the op {op}: {info.value}"
