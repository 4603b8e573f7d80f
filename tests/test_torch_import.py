"""Saved PyTorch files (TorchScript, torch.export) compile from the CLI and match onnxruntime in the browser; files
that hold no network get one clear message."""
import os
import subprocess
import sys

import pytest
import torch

from webcnn import zoo
from webcnn.verify import verify

SHAPE = (1, 3, 40, 56)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch")
    model = zoo.build("shufflenet_block").eval()   # BatchNorm, channel shuffle (Reshape/Transpose), slices
    example = torch.zeros(SHAPE)
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example), out / "traced.pt")
        torch.export.save(torch.export.export(model, (example,)), out / "exported.pt2")
    torch.save(model.state_dict(), out / "weights_only.pt")
    torch.save(model, out / "pickled.pt")
    (out / "junk.pth").write_bytes(b"not a pytorch file")
    return out


def test_torchscript_file_matches_onnxruntime(browser, saved):
    report = verify(str(saved / "traced.pt"), {"": SHAPE}, browser=browser)
    assert report.ok, [(c.name, c.max_abs) for c in report.outputs]
    assert list(report.outputs[0].shape) == [1, 48, 20, 28] and report.outputs[0].max_abs <= 1e-3


def test_torch_export_file_matches_onnxruntime(browser, saved):
    report = verify(str(saved / "exported.pt2"), browser=browser)   # the shape the program was exported with
    assert report.ok, [(c.name, c.max_abs) for c in report.outputs]
    assert report.outputs[0].max_abs <= 1e-3


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "webcnn.cli", *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "WEBCNN_DEBUG": ""})


@pytest.mark.parametrize("name, args, phrases", [
    ("traced.pt", [], ["does not record its input shape", "--input-shape"]),
    ("weights_only.pt", [], ["state_dict", "torch.jit.save"]),
    ("pickled.pt", [], ["neither a TorchScript module nor a torch.export program"]),
    ("junk.pth", [], ["neither a TorchScript module nor a torch.export program"]),
    ("exported.pt2", ["--input-shape", "1,3,16,16"], ["input"]),
])
def test_unusable_torch_file_gets_one_clear_message(saved, tmp_path, name, args, phrases):
    out_dir = tmp_path / "bundle"
    result = run_cli("compile", str(saved / name), "-o", str(out_dir), *args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert not out_dir.exists()


def test_traced_file_compiles_from_the_cli(saved, tmp_path):
    result = run_cli("compile", str(saved / "traced.pt"), "-o", str(tmp_path / "b"), "--input-shape", "1,3,40,56")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "b" / "model.json").is_file() and (tmp_path / "b" / "weights.bin").is_file()
