"""ONNX's own backend node test cases, compiled by webcnn and run in headless Chromium.

The onnx wheel ships the case generators, not the data: the cases are built in-process with
`collect_testcases()`. Only single-node cases of the ops in OPS are run; the `_expanded` variants test
the ops of a function body (CastLike, Where, ReduceSum, ...), not the op itself.

webcnn compiles weights, shapes, pads and scales into the bundle, so the inputs in FROZEN become
initializers holding the case's own values; every other input is fed at run time. Cases refused by design
are in EXCLUDED with their reason, and must be refused cleanly.

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
       "MatMul", "Transpose", "LRN", "Dropout", "Identity", "Erf", "Expand", "Gelu",
       "InstanceNormalization", "LayerNormalization", "Gather", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Where",
       "Not", "And", "Or", "Xor", "Round", "Sign", "Sin", "Cos"]

# Input positions that webcnn takes as compile-time constants, per op.
FROZEN = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "BatchNormalization": (1, 2, 3, 4), "Clip": (1, 2), "Gemm": (1, 2),
    "MatMul": (1,), "Resize": (1, 2, 3), "Upsample": (1,), "Pad": (1, 2, 3), "Reshape": (1,), "Dropout": (1, 2),
    "Expand": (1,), "InstanceNormalization": (1, 2), "Gather": (1,),
}

# Cases webcnn refuses by design, with the reason. Each must fail to compile with a WebcnnError naming the op.
NON_FLOAT = "integer input: webcnn computes in float32 textures"
NOT_2D = "pooling/convolution over 3 spatial axes: webcnn lowers 2-D (and 1-D) CNNs"
BATCH = "batch > 1 for a convolution: webcnn compiles batch-1 CNNs"
TRAINING_DROPOUT = "training-mode Dropout drops at random"
LN_STATS = "these cases also output LayerNormalization's Mean and InvStdDev: webcnn computes Y only"
EXCLUDED = {
    "test_layer_normalization_2d_axis0": LN_STATS,
    "test_layer_normalization_2d_axis1": LN_STATS,
    "test_layer_normalization_2d_axis_negative_1": LN_STATS,
    "test_layer_normalization_2d_axis_negative_2": LN_STATS,
    "test_layer_normalization_3d_axis0_epsilon": LN_STATS,
    "test_layer_normalization_3d_axis1_epsilon": LN_STATS,
    "test_layer_normalization_3d_axis2_epsilon": LN_STATS,
    "test_layer_normalization_3d_axis_negative_1_epsilon": LN_STATS,
    "test_layer_normalization_3d_axis_negative_2_epsilon": LN_STATS,
    "test_layer_normalization_3d_axis_negative_3_epsilon": LN_STATS,
    "test_layer_normalization_4d_axis0": LN_STATS,
    "test_layer_normalization_4d_axis1": LN_STATS,
    "test_layer_normalization_4d_axis2": LN_STATS,
    "test_layer_normalization_4d_axis3": LN_STATS,
    "test_layer_normalization_4d_axis_negative_1": LN_STATS,
    "test_layer_normalization_4d_axis_negative_2": LN_STATS,
    "test_layer_normalization_4d_axis_negative_3": LN_STATS,
    "test_layer_normalization_4d_axis_negative_4": LN_STATS,
    "test_layer_normalization_default_axis": LN_STATS,
    "test_add_int16": NON_FLOAT,
    "test_add_int8": NON_FLOAT,
    "test_add_uint16": NON_FLOAT,
    "test_add_uint32": NON_FLOAT,
    "test_add_uint64": NON_FLOAT,
    "test_add_uint8": NON_FLOAT,
    "test_sub_int16": NON_FLOAT,
    "test_sub_int8": NON_FLOAT,
    "test_sub_uint16": NON_FLOAT,
    "test_sub_uint32": NON_FLOAT,
    "test_sub_uint64": NON_FLOAT,
    "test_sub_uint8": NON_FLOAT,
    "test_mul_int16": NON_FLOAT,
    "test_mul_int8": NON_FLOAT,
    "test_mul_uint16": NON_FLOAT,
    "test_mul_uint32": NON_FLOAT,
    "test_mul_uint64": NON_FLOAT,
    "test_mul_uint8": NON_FLOAT,
    "test_div_int16": NON_FLOAT,
    "test_div_int8": NON_FLOAT,
    "test_div_int32_trunc": NON_FLOAT,
    "test_div_uint16": NON_FLOAT,
    "test_div_uint32": NON_FLOAT,
    "test_div_uint64": NON_FLOAT,
    "test_div_uint8": NON_FLOAT,
    "test_clip_default_int8_inbounds": NON_FLOAT,
    "test_clip_default_int8_max": NON_FLOAT,
    "test_clip_default_int8_min": NON_FLOAT,
    "test_edge_pad": NON_FLOAT,
    "test_reflect_pad": NON_FLOAT,
    "test_wrap_pad": NON_FLOAT,
    "test_maxpool_2d_uint8": NON_FLOAT,
    "test_averagepool_3d_default": NOT_2D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False": NOT_2D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True": NOT_2D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False": NOT_2D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True": NOT_2D,
    "test_averagepool_3d_dilations_small": NOT_2D,
    "test_maxpool_3d_default": NOT_2D,
    "test_maxpool_3d_dilations": NOT_2D,
    "test_maxpool_3d_dilations_use_ref_impl": NOT_2D,
    "test_maxpool_3d_dilations_use_ref_impl_large": NOT_2D,
    "test_convtranspose_3d": NOT_2D,
    "test_convtranspose_group_2_image_3": BATCH,
    "test_batchnorm_epsilon_training_mode": "training_mode=1 computes batch statistics; webcnn runs inference",
    "test_batchnorm_example_training_mode": "training_mode=1 computes batch statistics; webcnn runs inference",
    "test_training_dropout": TRAINING_DROPOUT,
    "test_training_dropout_default": TRAINING_DROPOUT,
    "test_training_dropout_mask": "training-mode Dropout drops at random; its mask output is boolean",
    "test_training_dropout_default_mask": "training-mode Dropout drops at random; its mask output is boolean",
    "test_training_dropout_zero_ratio_mask": "Dropout's mask output is boolean",
    "test_dropout_default_mask": "Dropout's mask output is boolean",
    "test_dropout_default_mask_ratio": "Dropout's mask output is boolean",
    "test_maxpool_with_argmax_2d_precomputed_pads": "MaxPool's Indices output is int64",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool's Indices output is int64",
    "test_identity_opt": "an optional-typed input; webcnn takes tensors",
    "test_identity_sequence": "a sequence-typed input; webcnn takes tensors",
    "test_reshape_allowzero_reordered": "an empty (0-element) tensor",
    "test_upsample_nearest": "opset 9: Upsample is deprecated since opset 10 and webcnn reads opsets 11 to 25",
    "test_resize_downsample_scales_cubic_antialias": "antialiased downsampling",
    "test_resize_downsample_scales_linear_antialias": "antialiased downsampling",
    "test_resize_downsample_sizes_cubic_antialias": "antialiased downsampling",
    "test_resize_downsample_sizes_linear_antialias": "antialiased downsampling",
}


# Cases whose expected data (from ONNX's reference implementation) disagrees with onnxruntime and PyTorch, the
# references webcnn follows (verify compares with onnxruntime): these compare with onnxruntime's output instead.
ORT_REFERENCE = {
    # align_corners with scales 0.6 of 4 columns: ONNX's reference takes length_resized = 2.4, onnxruntime and
    # PyTorch (and the spec's words, "the length of the resized tensor") take 2, the output's length.
    "test_resize_downsample_scales_linear_align_corners": "length_resized is the output's length",
    "test_resize_downsample_scales_cubic_align_corners": "length_resized is the output's length",
}


# Integer cases whose results do not depend on the element type (data movement, max, clamp): besides being
# refused as they are, they run with their data cast to float32. That keeps the edge/reflect/wrap Pad modes covered.
AS_FLOAT32 = ["test_edge_pad", "test_reflect_pad", "test_wrap_pad", "test_maxpool_2d_uint8",
              "test_clip_default_int8_inbounds", "test_clip_default_int8_max", "test_clip_default_int8_min"]


def _collect():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators of unrelated ops warn about overflowing casts
        cases = collect_testcases()
    nodes = {c.name: c.model.graph.node for c in cases}
    return {c.name: c for c in cases
            if "_expanded" not in c.name and len(nodes[c.name]) == 1 and nodes[c.name][0].op_type in OPS}


CASES = _collect()

# The comparison and logic cases whose graph inputs are booleans or integers (or whose opset, 7 for And/Or/Xor, is
# older than webcnn reads): refused like every other non-float input. Inside a graph, comparisons give 1.0 / 0.0.
NON_FLOAT_LOGIC = "boolean or integer graph inputs (or opset 7): webcnn takes float32 inputs"
EXCLUDED.update({name: NON_FLOAT_LOGIC for name, case in CASES.items()
                 if case.model.graph.node[0].op_type in ("Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal",
                                                         "Where", "Not", "And", "Or", "Xor")
                 and (any(vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT for vi in case.model.graph.input)
                      or case.model.opset_import[0].version < 11)})


def _freeze(case, frozen_positions=None):
    """The case's model with its FROZEN inputs turned into initializers, and the feeds for the rest."""
    model = onnx.ModelProto.FromString(case.model.SerializeToString())
    node = model.graph.node[0]
    if frozen_positions is None:
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


def _as_float32(model, feeds, expected):
    """The same case with its integer data type (that of the first input) replaced by float32."""
    dtype = model.graph.input[0].type.tensor_type.elem_type
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.type.tensor_type.elem_type == dtype:
            vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    for k, init in enumerate(model.graph.initializer):
        if init.data_type == dtype:
            model.graph.initializer[k].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    return model, feeds, {k: v.astype(np.float32) for k, v in expected.items()}


def _run(browser, tmp_path, name, model, feeds, expected):
    webcnn.compile(model, out_dir=tmp_path)
    got, _, _ = browser.run_bundle(tmp_path, {k: np.asarray(v, np.float32) for k, v in feeds.items()})
    for out, ref in expected.items():
        assert_close(f"{name}/{out}", got[out], ref)


def test_every_op_has_cases():
    assert {c.model.graph.node[0].op_type for c in CASES.values()} == set(OPS)
    assert set(EXCLUDED) <= set(CASES), "stale exclusions"


@pytest.mark.parametrize("name", sorted(set(CASES) - set(EXCLUDED)))
def test_case(name, browser, tmp_path):
    model, feeds, expected = _freeze(CASES[name])
    if name in ORT_REFERENCE:
        from webcnn.verify import reference
        expected = reference(model, feeds)
        assert not np.allclose(list(expected.values())[0], list(_freeze(CASES[name])[2].values())[0]), \
            "onnxruntime now agrees with ONNX's reference: drop the case from ORT_REFERENCE"
    _run(browser, tmp_path, name, model, feeds, expected)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.model.graph.node[0].op_type in ("MatMul", "Gemm")))
def test_matmul_case_of_two_computed_tensors(name, browser, tmp_path):
    """The MatMul and Gemm cases again with every operand fed at run time (attention's products), not only
    constant B (and C)."""
    _run(browser, tmp_path, name, *_freeze(CASES[name], frozen_positions=()))


@pytest.mark.parametrize("name", AS_FLOAT32)
def test_integer_case_as_float32(name, browser, tmp_path):
    _run(browser, tmp_path, name, *_as_float32(*_freeze(CASES[name])))


@pytest.mark.parametrize("name", sorted(EXCLUDED))
def test_excluded_case_is_refused(name, tmp_path):
    model, _, _ = _freeze(CASES[name])
    op = model.graph.node[0].op_type
    with pytest.raises(WebcnnError) as info:  # a clean refusal, never a crash
        webcnn.compile(model, out_dir=tmp_path)
    assert op in str(info.value), f"the error does not name the op {op}: {info.value}"


@pytest.mark.parametrize("op,mode", [("DepthToSpace", "DCR"), ("DepthToSpace", "CRD"), ("SpaceToDepth", None)])
def test_depth_space_rearrangement(op, mode, browser, tmp_path):
    """PixelShuffle/PixelUnshuffle (ONNX's backend cases for these are opset 28, past webcnn's 25), vs onnxruntime."""
    from onnx import TensorProto, helper

    from webcnn.verify import reference

    shape = (1, 12, 5, 7) if op == "DepthToSpace" else (1, 3, 10, 14)
    attrs = {"blocksize": 2, **({"mode": mode} if mode else {})}
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    _run(browser, tmp_path, f"{op}_{mode}", model, feeds, reference(model, feeds))


def test_cast_to_float_is_a_no_op(browser, tmp_path):
    """tf2onnx leaves Cast(to=FLOAT) on float tensors: nothing to run (a Cast to an integer type stays refused)."""
    from onnx import TensorProto, helper

    from webcnn.verify import reference

    def model(to):
        w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((5, 3, 3, 3)).astype(np.float32), "w")
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("Cast", ["c"], ["a"], to=to),
                 helper.make_node("Cast", ["a"], ["f"], to=TensorProto.FLOAT), helper.make_node("Relu", ["f"], ["y"])]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 6, 7))],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 5, 6, 7))],
                                  initializer=[w])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    plain = model(TensorProto.FLOAT)
    assert [p["op"].split(":")[0] for p in webcnn.compile(plain).manifest["passes"]] == ["Conv"]   # + Relu
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 3, 6, 7)).astype(np.float32)}
    _run(browser, tmp_path, "cast", plain, feeds, reference(plain, feeds))
    with pytest.raises(WebcnnError, match="Cast"):
        webcnn.compile(model(TensorProto.INT32))
