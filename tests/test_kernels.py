"""The phased conv kernels (several output pixels per fragment, array-texture outputs) against onnxruntime, across
kernel shapes, strides, dilations, pads, groups and transposed convs, and every phase count the compiler offers."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from webcnn import plan
from webcnn.compiler import compile as compile_model
from webcnn.verify import verify

from conftest import export_quietly


class Then(nn.Module):
    """conv, then a pass that reads its output through the generic fetch (so the conv output is an inner tensor,
    which webcnn lays out phase-split) and a 1x1 conv that reads it through the phased kernel."""

    def __init__(self, conv, cout):
        super().__init__()
        self.conv = conv
        self.mix = nn.Conv2d(cout, 4, 1)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return torch.cat([F.avg_pool2d(y, 1)[:, :4], self.mix(y)], 1)


CASES = {
    "1x1": (lambda: nn.Conv2d(8, 12, 1), 8, (9, 13)),
    "3x3 pad 1": (lambda: nn.Conv2d(6, 8, 3, padding=1), 6, (10, 17)),
    "3x3 stride 2": (lambda: nn.Conv2d(5, 8, 3, stride=2, padding=1), 5, (11, 19)),
    "3x3 dilation 2": (lambda: nn.Conv2d(4, 8, 3, padding=2, dilation=2), 4, (12, 20)),
    "5x3 asymmetric": (lambda: nn.Conv2d(4, 8, (5, 3), padding=(1, 2)), 4, (12, 15)),
    "7x7 stride 2 pad 3": (lambda: nn.Conv2d(3, 8, 7, stride=2, padding=3), 3, (20, 23)),
    "depthwise 3x3": (lambda: nn.Conv2d(8, 8, 3, padding=1, groups=8), 8, (9, 21)),
    "depthwise 3x3 stride 2": (lambda: nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12), 12, (14, 18)),
    "depthwise 5x5 dilation 2": (lambda: nn.Conv2d(4, 4, 5, padding=4, dilation=2, groups=4), 4, (13, 17)),
    "grouped (generic path)": (lambda: nn.Conv2d(8, 12, 3, padding=1, groups=4), 8, (8, 11)),
    "narrow map": (lambda: nn.Conv2d(8, 8, 3, padding=1), 8, (5, 3)),
    "transposed 2x2 s2": (lambda: nn.ConvTranspose2d(8, 8, 2, stride=2), 8, (7, 9)),
    "transposed 3x3 s2 pad 1 out_pad 1": (lambda: nn.ConvTranspose2d(6, 8, 3, 2, 1, output_padding=1), 6, (6, 9)),
    "transposed 4x4 s2 pad 1": (lambda: nn.ConvTranspose2d(4, 8, 4, 2, 1), 4, (5, 7)),
    "transposed 3x3 s1 dilation 2": (lambda: nn.ConvTranspose2d(4, 8, 3, 1, 2, dilation=2), 4, (8, 11)),
    "transposed 3x3 s3 (generic path)": (lambda: nn.ConvTranspose2d(4, 8, 3, stride=3), 4, (5, 6)),
    "transposed depthwise s2": (lambda: nn.ConvTranspose2d(8, 8, 2, stride=2, groups=8), 8, (6, 10)),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp("kernels")
    cache = {}

    def get(name):
        if name not in cache:
            make, cin, (h, w) = CASES[name]
            torch.manual_seed(0)
            conv = make()
            cache[name] = export_quietly(Then(conv, conv.out_channels), (1, cin, h, w), out / f"{len(cache)}.onnx")
        return cache[name]
    return get


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("phases", [4, 8])
def test_phased_conv_matches_onnxruntime(browser, models, name, phases):
    report = verify(models(name), browser=browser, phases=phases)
    for c in report.outputs:
        assert c.scaled <= 1e-3, f"{name} P={phases}: max abs {c.max_abs:.3e} (max|ref| {c.max_ref:.3e})"


def test_phased_layout_is_used(models):
    manifest = compile_model(models("3x3 pad 1"), phases=8).manifest
    assert any(t.get("layers") == 8 for t in manifest["textures"]), manifest["textures"]
    assert any(p["op"] == "Conv:densex8" for p in manifest["passes"])
    # outputs stay plain 2-D textures: they are read back and handed to apps
    out = manifest["outputs"][0]["parts"][0]["texture"]
    assert "layers" not in manifest["textures"][out]
    plain = compile_model(models("3x3 pad 1"), phases=1).manifest
    assert not any("layers" in t for t in plain["textures"])


class ConcatThenDepthwise(nn.Module):
    """A depthwise conv (and a dense one) over a zero-copy concat: each output slice reads one of several parts."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 8, 1), nn.Conv2d(4, 12, 3, padding=1)
        self.dw = nn.Conv2d(20, 20, 3, padding=1, groups=20)
        self.dense = nn.Conv2d(20, 4, 3, padding=1)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], 1)
        return torch.cat([torch.relu(self.dw(y)), self.dense(y)], 1) * 1.5


@pytest.mark.parametrize("phases", [1, 8])
def test_phased_conv_over_a_concat(browser, tmp_path, phases):
    torch.manual_seed(0)
    path = export_quietly(ConcatThenDepthwise(), (1, 4, 9, 19), tmp_path / "cat.onnx")
    report = verify(path, browser=browser, phases=phases)
    assert report.ok, [(c.name, c.max_abs) for c in report.outputs]


class OnPhasedInput(nn.Module):
    """A conv whose input is an inner (phase-split) tensor, so its columns come from array-texture layers: where
    P x stride is a multiple of the input's phases, each column's texel column and layer are known up to the
    fragment's position (the aligned path; its edge columns clamp and mask); elsewhere they are divided out. With
    `cat`, its input is a zero-copy concat of the graph input (a plain texture) and the inner tensor."""

    def __init__(self, conv, cat=False):
        super().__init__()
        self.pre, self.conv, self.cat = nn.Conv2d(4, 8, 1), conv, cat

    def forward(self, x):
        y = torch.relu(self.pre(x))
        return self.conv(torch.cat([x, y], 1) if self.cat else y)


PHASED_INPUT_CASES = {
    "3x3 pad 1": lambda: OnPhasedInput(nn.Conv2d(8, 8, 3, padding=1)),
    "depthwise 3x3 stride 2": lambda: OnPhasedInput(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)),
    "depthwise 3x3 dilation 2": lambda: OnPhasedInput(nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)),
    "3x3 over plain + phased concat": lambda: OnPhasedInput(nn.Conv2d(12, 8, 3, padding=1), cat=True),
}


@pytest.mark.parametrize("name", list(PHASED_INPUT_CASES))
@pytest.mark.parametrize("width", [16, 24, 21])   # multiples of 8 and 4 (aligned), and of neither
@pytest.mark.parametrize("phases", [4, 8])
def test_conv_on_phased_input(browser, tmp_path, monkeypatch, name, width, phases):
    # no speed-for-memory trade: in a graph this small it would store the tensors under test plain
    monkeypatch.setattr(plan, "MEMORY_TARGET", float("inf"))
    torch.manual_seed(0)
    path = export_quietly(Then(PHASED_INPUT_CASES[name](), 8), (1, 4, 6, width), tmp_path / "phased_in.onnx")
    manifest = compile_model(path, phases=phases).manifest
    layered = {i for i, t in enumerate(manifest["textures"]) if t.get("layers")}
    tested = [p for p in manifest["passes"] if p["node"].startswith("/conv/conv/")]
    assert tested and "x" in tested[0]["op"], tested   # the phased kernel (P may be fitted down to 7)
    assert any(i.get("texture") in layered for i in tested[0]["inputs"]), tested   # over a phase-split input
    report = verify(path, browser=browser, phases=phases)
    assert all(c.scaled <= 1e-5 for c in report.outputs), [(c.name, c.max_abs) for c in report.outputs]


class UnalignedConcat(nn.Module):
    """Copy concats whose parts start at every lane offset (0-3), one of them a zero-copy concat of two parts and one
    a single channel inside one output slice; one feeds a conv, one is the graph's output."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 3, 1)
        self.d, self.e = nn.Conv2d(3, 1, 3, padding=1), nn.Conv2d(3, 6, 1)
        self.mix = nn.Conv2d(22, 5, 3, padding=1)

    def forward(self, x):
        zero_copy = torch.cat([self.a(x), torch.relu(self.b(x))], 1)
        y = torch.cat([torch.sigmoid(self.c(x)), zero_copy, self.d(x), torch.sigmoid(self.e(x))], 1)
        return torch.cat([x, torch.sigmoid(self.mix(y)), self.d(x)], 1)


def test_unaligned_concat_copies(browser, tmp_path):
    torch.manual_seed(0)
    path = export_quietly(UnalignedConcat(), (1, 3, 7, 19), tmp_path / "cat.onnx")
    ops = [p["op"] for p in compile_model(path).manifest["passes"]]
    assert ops.count("Concat") == 2, ops
    report = verify(path, browser=browser)
    assert report.ok and report.outputs[0].max_abs < 1e-5, [(c.name, c.max_abs) for c in report.outputs]


class UpsampleThenSoftmax(nn.Module):
    """An inner bilinear upsample (the phased Resize: P pixels share their input columns) and a softmax over 3
    channels, all in one texel (the one-fetch Softmax)."""

    def __init__(self, scale, align_corners):
        super().__init__()
        self.scale, self.align = scale, align_corners
        self.a, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 1)

    def forward(self, x):
        y = F.interpolate(torch.relu(self.a(x)), scale_factor=self.scale, mode="bilinear",
                          align_corners=self.align)
        return torch.softmax(self.head(y) * 3.0, 1)


@pytest.mark.parametrize("scale,align_corners", [(2, False), (4, False), (2, True), (3, False)])
def test_phased_resize_and_softmax(browser, tmp_path, scale, align_corners):
    torch.manual_seed(0)
    path = export_quietly(UpsampleThenSoftmax(scale, align_corners), (1, 3, 5, 7), tmp_path / "up.onnx")
    ops = [p["op"] for p in compile_model(path).manifest["passes"]]
    # integer factors dividing the 8 phases take the phased path; align_corners and x3 the generic one
    assert ("Resize:linearx8" in ops) == (scale in (2, 4) and not align_corners), ops
    report = verify(path, browser=browser)
    assert report.ok, [(c.name, c.max_abs) for c in report.outputs]


class PointwisePair(nn.Module):
    """1x1 conv over a concat (10 channels, sigmoid: padding lanes would not be zero), then a 1x1 head of 3 and a
    softmax: the two 1x1 convs are one fused pass."""

    def __init__(self):
        super().__init__()
        self.a, self.p, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(16, 10, 1), nn.Conv2d(10, 3, 1)

    def forward(self, x):
        y = torch.relu(self.a(x))
        return torch.softmax(self.head(torch.sigmoid(self.p(torch.cat([y, y * 2.0], 1)))), 1)


def test_fused_pointwise_pair(browser, tmp_path):
    torch.manual_seed(0)
    path = export_quietly(PointwisePair(), (1, 3, 6, 21), tmp_path / "pair.onnx")
    ops = [p["op"] for p in compile_model(path).manifest["passes"]]
    assert any(op.startswith("Conv:pointwise-pairx") for op in ops), ops   # x7: width 21 (compiler.fit_phases)
    report = verify(path, browser=browser)
    assert report.ok, [(c.name, c.max_abs) for c in report.outputs]


class WideHead(nn.Module):
    """A VGG-style classifier over a flattened map (6272 inputs: wider than a 4096 texture row) and a 3x3 conv with
    more input channels than a small texture limit allows in one weight row."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 128, 3, 2, 1)
        self.wide = nn.Conv2d(128, 8, 3, 1, 1)
        self.fc1, self.fc2 = nn.Linear(128 * 7 * 7, 40), nn.Linear(40, 10)

    def forward(self, x):
        f = torch.relu(self.c(x))
        return torch.cat([self.fc2(torch.relu(self.fc1(f.flatten(1)))), self.wide(f).mean((2, 3))], 1)


@pytest.mark.parametrize("model,shape,max_texture_size", [
    ("head", (1, 3, 14, 14), 4096), ("head", (1, 3, 14, 14), 1024),
    # a phased (8 pixels per fragment) 1x1 and 3x3 conv over 300 channels under a 256 texture limit
    ("phased", (1, 300, 4, 16), 256)])
def test_weight_rows_wider_than_a_texture_are_folded(browser, tmp_path, model, shape, max_texture_size):
    torch.manual_seed(0)
    module = WideHead() if model == "head" else nn.Sequential(nn.Conv2d(300, 6, 1), nn.ReLU(),
                                                              nn.Conv2d(6, 300, 1), nn.Conv2d(300, 5, 3, 1, 1))
    path = export_quietly(module, shape, tmp_path / "wide.onnx")
    report = verify(path, browser=browser, max_texture_size=max_texture_size)
    assert report.ok, [(c.name, c.max_abs) for c in report.outputs]
