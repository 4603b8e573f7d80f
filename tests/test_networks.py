"""Whole networks, built here with seeded weights (no downloads), compiled and run in Chromium vs onnxruntime."""

import pytest

from webcnn import zoo
from webcnn.verify import verify

from conftest import export_quietly

# Measured fp16 (RGBA16F activations) error on these networks stays well inside this bound.
FP16_TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = export_quietly(zoo.build(name), zoo.NETWORKS[name][1], out / f"{name}.onnx")
        return cache[name]
    return get


@pytest.mark.parametrize("name", list(zoo.NETWORKS))
def test_network_matches_onnxruntime(browser, exported, name):
    report = verify(exported(name), browser=browser)
    for c in report.outputs:
        assert c.scaled <= 1e-3, f"{name}/{c.name}: max abs {c.max_abs:.3e} vs max|ref| {c.max_ref:.3e}"


@pytest.mark.parametrize("name", ["mobilenetv2", "unet", "shufflenet_block"])
def test_network_fp16_within_stated_tolerance(browser, exported, name):
    report = verify(exported(name), browser=browser, precision="fp16")
    assert report.stats["precision"] == "fp16"
    for c in report.outputs:
        assert c.scaled <= FP16_TOLERANCE, f"{name}/{c.name} fp16: max abs {c.max_abs:.3e}"


def test_per_layer_reports_every_intermediate(browser, exported):
    report = verify(exported("densenet_block"), browser=browser, per_layer=True)
    assert len(report.layers) >= 8
    assert report.first_divergent is None


def test_long_dense_blocks_fit_the_texture_units(browser, tmp_path):
    """20-layer dense blocks: zero-copy concats of many parts, and copy concats of many unaligned inputs."""
    import torch

    class TwoBlocks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.aligned = zoo.DenseBlock(16, 8, 20)
            self.unaligned = zoo.DenseBlock(16, 6, 18)

        def forward(self, x):
            return self.aligned(x) + self.unaligned(x)

    torch.manual_seed(0)
    path = zoo.export(TwoBlocks().eval(), (1, 3, 16, 16), str(tmp_path / "dense.onnx"))
    report = verify(path, browser=browser)
    assert report.ok, [(c.name, c.max_abs) for c in report.outputs]


def _small_networks():
    """Patterns of real networks that once gave wrong answers, each small: name -> (module, input shape)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Lambda(nn.Module):
        def __init__(self, fn, **mods):
            super().__init__()
            self.fn, self.mods = fn, nn.ModuleDict(mods)

        def forward(self, x):
            return self.fn(self.mods, x)

    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return {
        # (x - mean) / std on 3 channels: the constant's zero padding lane made 0 / 0 = NaN there, and masking by
        # multiplying with 0 kept the NaN, which the next conv spread to every channel.
        "rgb_normalisation": (Lambda(lambda m, x: m["c"]((x - mean) / std), c=nn.Conv2d(3, 4, 3, 1, 1)),
                              (1, 3, 14, 15)),
        # Reciprocal fused into a 1x1 conv of 6 channels whose only reader is a 1x1 conv of 2 (one pass, the pointwise
        # pair): 1 / 0 = inf in the padding lanes of the first conv's last slice.
        "reciprocal_pointwise_pair": (Lambda(lambda m, x: m["b"](torch.reciprocal(m["a"](x))) * 2.0,
                                             a=nn.Conv2d(3, 6, 1), b=nn.Conv2d(6, 2, 1)), (1, 3, 16, 24)),
        # x ** 3 of negative x: GLSL's pow is undefined for a negative base
        "odd_power": (Lambda(lambda m, x: m["c"](x) ** 3, c=nn.Conv2d(3, 5, 3, 1, 1)), (1, 3, 9, 11)),
        # nn.GELU() exports as Div, Erf, Add, Mul, Mul below opset 20
        "gelu_erf": (nn.Sequential(nn.Conv2d(3, 6, 1), nn.GELU(), nn.Conv2d(6, 5, 1)), (1, 3, 10, 14)),
        # the tanh approximation below opset 20: Mul, Mul (x^3), Mul, Add, Mul, Tanh, Add, Mul, Mul; x also feeds a
        # residual, and a second GELU's cube is written as Pow
        "gelu_tanh": (Lambda(lambda m, x: m["d"]((f := m["c"](x)) + F.gelu(f, approximate="tanh")) + 0.5 * f * (
            1 + torch.tanh((2 / torch.pi) ** 0.5 * (f + 0.044715 * f ** 3))), c=nn.Conv2d(3, 6, 1), d=nn.Conv2d(6, 6, 1)),
            (1, 3, 10, 14)),
        # a non-integer factor with align_corners: 7 rows x 1.5 = 10 rows, with corners 0 and 9 (not 10.5 - 1)
        "align_corners_x1_5": (Lambda(lambda m, x: torch.cat([
            F.interpolate(m["c"](x), scale_factor=1.5, mode="bilinear", align_corners=True)[:, :, :, :11],
            F.interpolate(m["c"](x), scale_factor=(1.5, 1.3), mode="bilinear", align_corners=True)], 1),
            c=nn.Conv2d(5, 6, 3, 1, 1)), (1, 5, 7, 9)),
        # nearest x1.7: output column 17 maps to 17 / 1.7 = 10.0 exactly in float32, the GPU's division gave 9.99...
        "nearest_x1_7": (Lambda(lambda m, x: F.interpolate(m["c"](x), scale_factor=1.7, mode="nearest"),
                                c=nn.Conv2d(3, 4, 1)), (1, 3, 9, 11)),
        # opset 20 exports nn.GELU as Gelu, whose approximate attribute ONNX stores as bytes
        "gelu_opset20": (nn.Sequential(nn.Conv2d(3, 6, 1), nn.GELU(), nn.Conv2d(6, 6, 1), nn.GELU("tanh")),
                         (1, 3, 10, 14), 20),
        # a 1-D CNN's AdaptiveAvgPool1d(1): GlobalAveragePool over [N, C, L]
        "conv1d_global_pool": (nn.Sequential(nn.Conv1d(2, 6, 5, 2, 2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                                             nn.Linear(6, 3)), (1, 2, 40)),
        # expand() of a pooled [1, C, 1, 1] to the map's size, then concatenated (a context feature)
        "expand_concat": (Lambda(lambda m, x: m["c"](torch.cat([x, x.mean((2, 3), keepdim=True).expand(1, 6, 5, 7)],
                                                               1)), c=nn.Conv2d(12, 3, 1)), (1, 6, 5, 7)),
        # reductions over the channels: CBAM's spatial attention (mean and max), a hand-written LayerNorm2d (as
        # ConvNeXt's), F.normalize (ReduceL2), a min without keepdim
        "channel_reductions": (Lambda(lambda m, x: torch.cat([
            x * torch.sigmoid(m["s"](torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1))),
            (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-6),
            F.normalize(x, dim=1), x.amin(1)[:, None] + x.sum(1, keepdim=True)], 1), s=nn.Conv2d(2, 1, 7, 1, 3)),
            (1, 7, 9, 11)),
        # a segmentation net's class map: argmax / argmin over 7 channels (not a multiple of 4), after a ReLU so
        # that many channels tie at 0 (ONNX: the first index wins), cast back to float
        "class_map": (Lambda(lambda m, x: torch.cat([torch.relu(m["c"](x)).argmax(1, keepdim=True).float(),
                                                     torch.relu(m["c"](x)).argmin(1, keepdim=True).float()], 1),
                             c=nn.Conv2d(3, 7, 3, 1, 1)), (1, 3, 13, 17)),
        # ConvNeXt: LayerNormalization over the channels of an NHWC permute, Linear layers over it, layer scale;
        # and LayerNorm over [C, H, W] and over [H, W] (no affine) of NCHW maps
        "convnext_block": (Lambda(lambda m, x: torch.cat([
            m["ln_chw"](y := x + (m["scale"].weight[:, 0, 0, 0] * m["fc2"](F.gelu(m["fc1"](m["ln"](
                m["dw"](x).permute(0, 2, 3, 1)))))).permute(0, 3, 1, 2)), m["ln_hw"](y)], 1),
            dw=nn.Conv2d(12, 12, 7, 1, 3, groups=12), ln=nn.LayerNorm(12, eps=1e-6), fc1=nn.Linear(12, 48),
            fc2=nn.Linear(48, 12), scale=nn.Conv2d(12, 12, 1), ln_chw=nn.LayerNorm([12, 6, 7]),
            ln_hw=nn.LayerNorm([6, 7], elementwise_affine=False)), (1, 12, 6, 7)),
        # LayerNorm over the last axis of tokens [1, T, C], then of a flattened [1, N] vector
        "layernorm_tokens": (Lambda(lambda m, x: m["ln3"](m["ln2"](m["head"](m["ln"](
            m["c"](x).flatten(2).transpose(1, 2)))).flatten(1)),
            c=nn.Conv2d(3, 10, 3, 2, 1), ln=nn.LayerNorm(10), head=nn.Linear(10, 5), ln2=nn.LayerNorm(5),
            ln3=nn.LayerNorm(100)), (1, 3, 8, 10)),
        # reductions along the texture's rows or columns: a CRNN pools the height away (mean, max) before its
        # per-column head, a sum over W; token [1, T, C] mean / min / L2 norm over T, and a sum over T and C
        "height_width_reductions": (Lambda(lambda m, x: torch.cat([
            m["fc"]((f := torch.relu(m["c"](x))).mean(2).transpose(1, 2)), f.amax(2).transpose(1, 2)[:, :, :6],
            f.sum(3, keepdim=True).flatten(1)[:, None, :6]], 1), c=nn.Conv2d(3, 10, 3, 1, 1), fc=nn.Linear(10, 6)),
            (1, 3, 8, 21)),
        "token_reductions": (Lambda(lambda m, x: torch.cat([
            m["fc"]((t := m["c"](x).flatten(2).transpose(1, 2)).mean(1)), t.amin(1)[:, :4], t.norm(dim=1)[:, :4],
            (t * t).sum((1, 2))[None].expand(1, 4)], 1), c=nn.Conv2d(3, 8, 3, 2, 1), fc=nn.Linear(8, 4)),
            (1, 3, 9, 11)),
        # Gather with constant indices on computed tensors: a BGR -> RGB channel flip, x[:, -1] (drops the axis),
        # a row of one channel x[:, 3, 1] broadcast back over the map
        "constant_gathers": (Lambda(lambda m, x: torch.cat([
            (f := m["c"](x[:, [2, 1, 0]]))[:, -1][:, None], f[:, 3, 1][:, None, None, :].expand(1, 1, 7, 9)], 1),
            c=nn.Conv2d(3, 6, 3, 1, 1)), (1, 3, 7, 9)),
        # super-resolution's bicubic upsampling (Resize mode=cubic, a = -0.75), half_pixel and align_corners, x2 and
        # to odd sizes, and a downscale
        "bicubic": (Lambda(lambda m, x: torch.cat([
            F.interpolate(f := m["c"](x), scale_factor=2, mode="bicubic", align_corners=False),
            F.interpolate(f, size=(14, 18), mode="bicubic", align_corners=True),
            F.interpolate(F.interpolate(f, size=(5, 23), mode="bicubic"), size=(14, 18), mode="bilinear")], 1),
            c=nn.Conv2d(3, 5, 3, 1, 1)), (1, 3, 7, 9)),
        # self-attention over a conv map's tokens: 3 heads (not a multiple of 4), q k^T / sqrt(d), softmax over
        # the keys, a v, heads merged back, a residual; and one head over [1, T, C] tokens
        "self_attention": (Lambda(lambda m, x: torch.cat([x + m["proj"](
            (torch.softmax((q := m["q"](x).reshape(1, 3, 4, 35).transpose(2, 3)) @ m["k"](x).reshape(1, 3, 4, 35)
                           / 2.0, -1) @ m["v"](x).reshape(1, 3, 4, 35).transpose(2, 3)).transpose(2, 3).reshape(
                1, 12, 5, 7)), (torch.softmax((t := x.flatten(2).transpose(1, 2)) @ t.transpose(1, 2), -1) @ t)
            .transpose(1, 2).reshape(1, 12, 5, 7)], 1),
            q=nn.Conv2d(12, 12, 1), k=nn.Conv2d(12, 12, 1), v=nn.Conv2d(12, 12, 1), proj=nn.Conv2d(12, 12, 1)),
            (1, 12, 5, 7)),
        # products whose batch shapes broadcast ([1, 2, M, K] x computed [K, N]), and a constant matrix times
        # computed tokens (a learned token mixer)
        "matmul_broadcast": (Lambda(lambda m, x: torch.cat([
            ((f := m["c"](x)).reshape(1, 2, 3, 20) @ f.reshape(6, 20).transpose(0, 1)[:, :4]).reshape(1, 24),
            (m["mix"].weight[:, :, 0, 0] @ f.flatten(2).transpose(1, 2)).flatten(1)[:, :24]], 1),
            c=nn.Conv2d(3, 6, 3, 1, 1), mix=nn.Conv2d(20, 20, 1)), (1, 3, 4, 5)),
        # relayouts that move whole texels (an H/W transpose, a flip, a crop, a broadcast over H and W) on 6
        # channels (a partial last slice), and one that does not (a channel shuffle)
        "spatial_relayouts": (Lambda(lambda m, x: torch.cat([
            m["d"](torch.flip((f := m["c"](x)).transpose(2, 3), [3])[:, :, 1:8, :]),
            f.transpose(2, 3)[:, :, :7, :8].mean((2, 3), keepdim=True).expand(1, 6, 7, 8),
            f.reshape(1, 2, 3, 8, 11).transpose(1, 2).reshape(1, 6, 8, 11).transpose(2, 3)[:, :, :7, :8]], 1),
            c=nn.Conv2d(3, 6, 3, 1, 1), d=nn.Conv2d(6, 5, 1)), (1, 3, 8, 11)),
        # SiLU as exported (x * Sigmoid(x)), fused into its conv; Round on exact halves (ONNX rounds them to even)
        # and Sign
        "silu_round_sign": (Lambda(lambda m, x: torch.cat([
            m["d"](F.silu(f := m["c"](x))), torch.round(torch.floor(f * 4) / 2), torch.sign(f)], 1),
            c=nn.Conv2d(3, 6, 3, 1, 1), d=nn.Conv2d(6, 4, 1)), (1, 3, 9, 13)),
        # GroupNorm over 32 groups of 8 channels at 64x64: each group's 32768 values are wider than a texture row
        "wide_group_norm": (nn.Sequential(nn.Conv2d(3, 256, 1), nn.GroupNorm(32, 256), nn.Conv2d(256, 4, 1)),
                            (1, 3, 64, 64)),
        # softmax of logits far below zero over 5 and 21 channels (a partial last slice: its padding lanes must
        # not join the sum), and over a long width and height (a statistics pass, then a normalising one)
        "softmax_far_logits": (Lambda(lambda m, x: torch.cat([
            torch.softmax(m["a"](x) - 100.0, 1), torch.log_softmax(m["b"](x) - 100.0, 1),
            torch.softmax(3.0 * m["a"](x), 3)[:, :, :, :], torch.log_softmax(3.0 * m["a"](x), 2)], 1),
            a=nn.Conv2d(3, 5, 3, 1, 1), b=nn.Conv2d(3, 21, 1)), (1, 3, 24, 40)),
        # reductions over the features of a [1, C] vector: F.normalize of an embedding, a classifier's argmax
        "vector_reductions": (Lambda(lambda m, x: torch.cat([
            F.normalize(e := m["fc"](x.mean((2, 3))), dim=1), e.argmax(1, keepdim=True).float(),
            e.amax(1, keepdim=True), e.sum(1, keepdim=True)], 1), fc=nn.Linear(3, 10)), (1, 3, 6, 7)),
        # reductions over the channels and the map together: per-sample normalisation, a global max and sum, an L2
        # norm over everything, and a min over every axis including the batch, without keepdim
        "whole_map_reductions": (Lambda(lambda m, x: torch.cat([
            ((f := m["c"](x)) - f.mean((1, 2, 3), keepdim=True)) / f.abs().amax((1, 2, 3), keepdim=True),
            torch.linalg.vector_norm(f, 2, dim=(1, 2, 3), keepdim=True).expand(1, 1, 6, 7), f.sum((1, 3), keepdim=True).expand(1, 1, 6, 7),
            f.amin((0, 1, 2, 3)).reshape(1, 1, 1, 1).expand(1, 1, 6, 7)], 1), c=nn.Conv2d(3, 5, 3, 1, 1)), (1, 3, 6, 7)),
        # comparisons and Where: torch.where(x > 0, x, 0.5 x), a (x >= t).float() mask, logic on masks, equality of
        # floored values (exact ties), and a broadcast threshold per channel
        "comparisons_where": (Lambda(lambda m, x: torch.cat([
            torch.where((f := m["c"](x)) > 0, f, 0.5 * f), (f >= 0.2).float() * f,
            ((f < -0.1) & (f > -1.0) | (f > 1.5) ^ (f > 2.0)).float(), (~(f <= 0.3)).float(),
            torch.eq(torch.floor(2 * f), 0).float(), torch.where(f > m["t"].weight.reshape(1, 5, 1, 1), 1.0, -f)], 1),
            c=nn.Conv2d(3, 5, 3, 1, 1), t=nn.Conv2d(1, 5, 1)), (1, 3, 6, 7)),
        # SIREN-style sine layers (omega 30: arguments in the tens) and a cosine
        "sin_cos": (Lambda(lambda m, x: torch.cat([torch.sin(30.0 * m["c"](x)), torch.cos(m["c"](x))], 1),
                    c=nn.Conv2d(3, 6, 1)), (1, 3, 9, 13)),
        # a detector's outputs: each scale's anchors flattened into [1, N, k] rows (4160 + 1040 > 4096, a texture's
        # size), sigmoid boxes, softmax over classes, the scales concatenated along N
        "detection_rows": (Lambda(lambda m, x: torch.cat([
            torch.cat([torch.sigmoid((b := m["box"](f)).permute(0, 2, 3, 1).reshape(1, -1, 4)),
                       torch.softmax(m["cls"](f).permute(0, 2, 3, 1).reshape(1, -1, 5), -1)], 2)
            for f in (m["c"](x), m["d"](m["c"](x)))], 1), c=nn.Conv2d(3, 8, 3, 1, 1), d=nn.Conv2d(8, 8, 3, 2, 1),
            box=nn.Conv2d(8, 4, 1), cls=nn.Conv2d(8, 5, 1)), (1, 3, 65, 64)),
        # a style-transfer block (InstanceNorm2d) and GroupNorm (exported as InstanceNormalization between reshapes)
        "instance_and_group_norm": (nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(3, 6, 3), nn.InstanceNorm2d(6, affine=True), nn.ReLU(),
            nn.Conv2d(6, 8, 3, 2, 1), nn.GroupNorm(2, 8)), (1, 3, 12, 13)),
    }


@pytest.mark.parametrize("name", ["rgb_normalisation", "reciprocal_pointwise_pair", "odd_power", "gelu_erf", "gelu_tanh",
                                  "align_corners_x1_5", "nearest_x1_7", "gelu_opset20", "conv1d_global_pool",
                                  "expand_concat", "channel_reductions", "instance_and_group_norm", "class_map",
                                  "convnext_block", "layernorm_tokens", "height_width_reductions",
                                  "token_reductions", "constant_gathers", "bicubic", "self_attention",
                                  "matmul_broadcast", "spatial_relayouts", "silu_round_sign", "wide_group_norm",
                                  "softmax_far_logits", "vector_reductions",
                                  "whole_map_reductions", "comparisons_where",
                                  "sin_cos", "detection_rows"])
def test_small_network_matches_onnxruntime(browser, tmp_path, name):
    import torch

    torch.manual_seed(0)
    module, shape, *opset = _small_networks()[name]
    path = export_quietly(module, shape, tmp_path / f"{name}.onnx", *opset)
    report = verify(path, browser=browser)
    for c in report.outputs:
        assert c.scaled <= 1e-3, f"{name}/{c.name}: max abs {c.max_abs:.3e} vs max|ref| {c.max_ref:.3e}"


def test_exported_gelu_fuses_into_its_conv(tmp_path):
    """torch.onnx's Div, Erf, Add, Mul, Mul for nn.GELU() below opset 20 becomes the conv's epilogue: no passes;
    so do the eight nodes of the tanh approximation (written out by hand too, with Pow for the cube)."""
    from torch import nn

    import webcnn

    module, shape = _small_networks()["gelu_erf"]
    path = export_quietly(module, shape, tmp_path / "gelu.onnx")
    assert isinstance(module[1], nn.GELU)
    ops = [p["op"].split(":")[0] for p in webcnn.compile(path).manifest["passes"]]
    assert ops == ["Conv", "Conv"], ops   # conv + GELU, conv
    module, shape = _small_networks()["gelu_tanh"]
    path = export_quietly(module, shape, tmp_path / "gelu_tanh.onnx")
    passes = webcnn.compile(path).manifest["passes"]
    assert not any(p["op"] in ("Tanh", "Pow") or p["op"].startswith("Mul") for p in passes), [p["op"] for p in passes]


def test_exported_silu_fuses_into_its_conv(tmp_path):
    """nn.SiLU exports as Sigmoid and Mul: both become the conv's epilogue."""
    from torch import nn

    import webcnn

    path = export_quietly(nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.SiLU(), nn.Conv2d(8, 4, 1)), (1, 3, 9, 13),
                          tmp_path / "silu.onnx")
    ops = [p["op"].split(":")[0] for p in webcnn.compile(path).manifest["passes"]]
    assert ops == ["Conv", "Conv"], ops


def test_argmax_select_last_index_matches_onnxruntime(browser, tmp_path):
    """ArgMax with select_last_index=1 over channels that tie (duplicated filters): the last index wins."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((3, 3, 3, 3)).astype(np.float32)
    w = np.concatenate([w, w[:2]])   # channels 3 and 4 copy 0 and 1: exact ties
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("ArgMax", ["y"], ["i"], axis=1, keepdims=0, select_last_index=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 10])],
                              [helper.make_tensor_value_info("i", TensorProto.INT64, [1, 9, 10])],
                              initializer=[numpy_helper.from_array(w, "w")])
    path = tmp_path / "argmax_last.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    report = verify(str(path), browser=browser)
    assert report.ok and report.outputs[0].max_abs == 0.0, [(c.name, c.max_abs) for c in report.outputs]
