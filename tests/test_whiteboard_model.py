"""Fast checks of the whiteboard generator, model, shipped ONNX file and evaluation (a few seconds each)."""
import os

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from whiteboard import evaluate, synth

torch = pytest.importorskip("torch")
from whiteboard import model as wb_model  # noqa: E402  (needs torch)

SHIPPED_ONNX = os.path.join(os.path.dirname(evaluate.__file__), "assets", "whiteboard.onnx")


def test_generator_is_deterministic_by_seed():
    a, b, c = synth.generate(7), synth.generate(7), synth.generate(8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label) and np.array_equal(a.clean, b.clean)
    assert not np.array_equal(a.image, c.image)


def test_labels_are_sane():
    for seed in range(4):
        s = synth.generate(seed)
        assert s.image.shape == (360, 640, 3) and s.image.dtype == np.uint8
        assert s.clean.shape == (360, 640, 3) and s.label.shape == (360, 640)
        assert set(np.unique(s.label)) <= {synth.CLASS_BOARD, synth.CLASS_INK, synth.CLASS_FOREGROUND}
        ink = s.label == synth.CLASS_INK
        assert 0 < ink.mean() < 0.3, "every frame has some ink, and ink is thin"
        assert set(s.regions) == set(synth.CONDITIONS)
        assert all(r.dtype == bool and r.shape == s.label.shape for r in s.regions.values())
        # ink is darker than the board in the clean image
        board = s.label == synth.CLASS_BOARD
        assert s.clean[ink].mean() < s.clean[board].mean()


def test_test_seeds_never_overlap_training():
    assert synth.TEST_SEEDS.stop <= synth.VAL_SEEDS.start and synth.VAL_SEEDS.stop <= synth.TRAIN_SEED_START


def test_model_flops_and_onnx_ops(tmp_path):
    net = wb_model.WhiteboardNet().eval()
    assert wb_model.count_flops(net) <= 1.5e9
    path = tmp_path / "net.onnx"
    ops = wb_model.export_onnx(net, path)
    assert set(ops) <= wb_model.ALLOWED_ONNX_OPS
    # onnxruntime agrees with torch on random weights and input
    x = torch.rand(wb_model.INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = wb_model.ExportWrapper(net)(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


def test_shipped_onnx_is_static_small_and_uses_supported_ops():
    model = onnx.load(SHIPPED_ONNX)
    assert os.path.getsize(SHIPPED_ONNX) <= 8 * 1024 * 1024
    assert {n.op_type for n in model.graph.node} <= wb_model.ALLOWED_ONNX_OPS
    assert any(o.domain in ("", "ai.onnx") and o.version == 17 for o in model.opset_import)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == list(wb_model.INPUT_SHAPE)
    probs = evaluate.OnnxModel(SHIPPED_ONNX).probs(synth.generate(1).image)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-4)


def test_shipped_model_finds_ink_on_a_test_frame():
    s = synth.generate(synth.TEST_SEEDS[3])
    pred = evaluate.OnnxModel(SHIPPED_ONNX).predict(s.image)
    assert evaluate.scores(evaluate.confusion(pred, s.label))["ink_f1"] > 0.6


def test_metrics_and_baseline_sanity():
    label = np.zeros((120, 200), np.uint8)
    cv2.line(label, (20, 60), (180, 60), synth.CLASS_INK, 3)
    perfect = evaluate.scores(evaluate.confusion(label, label))
    assert perfect["ink_f1"] == 1.0 and perfect["ink_iou"] == 1.0
    empty = evaluate.scores(evaluate.confusion(np.zeros_like(label), label))
    assert empty["ink_f1"] == 0.0
    # a dark stroke on an unevenly lit board: the baseline finds it
    ramp = np.linspace(150, 240, 200, dtype=np.float32)[None, :, None] * np.ones((120, 1, 3), np.float32)
    image = ramp.copy()
    image[label == synth.CLASS_INK] *= 0.3
    pred = evaluate.classical_baseline(image.astype(np.uint8))
    assert set(np.unique(pred)) <= {synth.CLASS_BOARD, synth.CLASS_INK}
    assert evaluate.scores(evaluate.confusion(pred, label))["ink_f1"] > 0.8



def test_shipped_onnx_passes_webcnn_verify_in_chromium(browser):
    """webcnn verify on the shipped model: compiled, run in headless Chromium (WebGL2, fp32), against onnxruntime."""
    from webcnn.verify import verify

    report = verify(SHIPPED_ONNX, browser=browser)
    assert [c.name for c in report.outputs] == ["probs"]
    # probabilities lie in [0, 1], so webcnn's fp32 bound 1e-3 * max(1, max|ref|) is an absolute 1e-3
    assert report.ok and report.outputs[0].scaled <= 1e-3, f"max abs {report.outputs[0].max_abs:.3e}"


def test_shipped_model_in_chromium_labels_a_frame_like_onnxruntime(browser, tmp_path):
    """A whiteboard frame, not noise: the browser's probabilities and classes match onnxruntime's."""
    from webcnn.compiler import compile as compile_model

    frame = synth.generate(synth.TEST_SEEDS[5]).image
    compile_model(SHIPPED_ONNX, out_dir=str(tmp_path))
    x = frame.astype(np.float32).transpose(2, 0, 1)[None] / 255
    outputs, _, _ = browser.run_bundle(str(tmp_path), {"image": x})
    got = outputs["probs"].reshape(3, 360, 640)
    ref = evaluate.OnnxModel(SHIPPED_ONNX).probs(frame)
    assert np.abs(got - ref).max() <= 1e-3
    # argmax may flip only where two classes tie within the tolerance
    assert (got.argmax(0) == ref.argmax(0)).mean() >= 0.9995
