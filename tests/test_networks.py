"""Whole networks, built here with seeded weights (no downloads), compiled and run in Chromium vs onnxruntime."""
import warnings

import pytest

from webcnn import zoo
from webcnn.verify import verify

# Measured fp16 (RGBA16F activations) error on these networks stays well inside this bound.
FP16_TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    cache = {}

    def get(name):
        if name not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[name] = zoo.export(zoo.build(name), zoo.NETWORKS[name][1], str(out / f"{name}.onnx"))
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
