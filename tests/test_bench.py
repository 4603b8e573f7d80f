"""The `webcnn bench` machinery on a tiny network with short windows: every field is there, frames were counted, and
webcnn's outputs match onnxruntime. No peers (TF.js, ORT Web) and no timing assertions: timing goals live in the
bench's own report."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from webcnn.bench import bench_input

SYSTEMS = ["idle", "webcnn", "webcnn-throughput", "ort-native"]
PAGE_FIELDS = ["frame_p50_ms", "frame_p99_ms", "frame_max_ms", "frames_over_50ms", "frames", "longtasks_load",
               "longtask_load_max_ms", "longtasks_run", "longtask_run_max_ms", "probe_p50_ms", "probe_p99_ms"]
SPEED_FIELDS = ["inferences", "latency_p50_ms", "latency_p90_ms", "throughput_per_s", "first_result_ms"]


class Tiny(nn.Module):
    """Conv, depthwise conv, a residual add and a channel concat: the kinds of op the bench maps to TF.js too."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        z = torch.relu(self.dw(y) + y)
        return self.head(torch.cat([y, z], 1))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    path = d / "tiny.onnx"
    torch.onnx.export(Tiny().eval(), torch.zeros(1, 3, 24, 40), str(path), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=["output"])
    # The real command line, in its own process, as a user runs it.
    cmd = [sys.executable, "-m", "webcnn.cli", "bench", "--network", str(path), "--systems", ",".join(SYSTEMS),
           "--seconds", "2", "--rounds", "2", "--min-inferences", "4", "--max-seconds", "20", "--trace",
           "-o", str(d / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "webcnn-throughput" in done.stdout   # the table is printed too
    return json.loads((d / "out" / "bench.json").read_text()), d / "out"


def test_bench_writes_json_table_and_plot(report):
    data, out = report
    assert list(data["networks"]) == ["tiny"]
    net = data["networks"]["tiny"]
    assert [r["system"] for r in net["results"]] == SYSTEMS
    assert (out / "bench.md").read_text().startswith("### tiny 24x40")
    assert (out / "tiny-frames.png").stat().st_size > 1000
    assert set(net["speed"]) == {"ort-native"}
    assert data["rounds"] == 2 and all(r.get("rounds", 2) == 2 for r in net["results"])
    by_round = {r["system"]: r.get("latency_p50_by_round_ms") for r in net["results"]}
    assert len(by_round["webcnn-throughput"]) == 2 and all(v > 0 for v in by_round["webcnn-throughput"])


def test_every_system_reports_every_field(report):
    results = {r["system"]: r for r in report[0]["networks"]["tiny"]["results"]}
    for system, r in results.items():
        assert "error" not in r, (system, r.get("error"))
    for system in ["idle", "webcnn", "webcnn-throughput"]:
        r = results[system]
        for field in PAGE_FIELDS:
            assert r[field] is not None, (system, field)
        assert r["frames"] > 10, system   # the display canvas kept animating through two 1 s windows
        assert len(r["trace"]["t"]) == len(r["trace"]["dt"]) > 10
        # Chromium's CPU use over the window, from /proc: the display alone keeps the GPU process busy here
        assert 0.02 < r["gpu_cores"] <= os.cpu_count() and 0 < r["renderer_cores"] <= os.cpu_count(), system
    for system in ["webcnn", "webcnn-throughput", "ort-native"]:
        r = results[system]
        for field in SPEED_FIELDS:
            assert r[field] is not None, (system, field)
        assert r["inferences"] >= 4, system
    stats = results["webcnn"]["stats"]
    assert stats["frames"] > 0 and stats["draws"] > 0 and stats["mode"] == "budget"
    assert stats["inFlight"] == 0   # nothing left on the GPU after the window
    assert len(stats["trace"]) == stats["frames"]   # one trace row per slice
    assert {m[1] for m in results["webcnn"]["trace"]["loadMarks"]} >= {"fetch", "textures", "weights", "compile"}


def test_webcnn_outputs_match_onnxruntime(report):
    results = {r["system"]: r for r in report[0]["networks"]["tiny"]["results"]}
    for system in ["webcnn", "webcnn-throughput", "ort-native"]:
        assert results[system]["max_abs_err"] is not None
        assert results[system]["max_abs_err"] <= 1e-4, system


def test_bench_input_is_deterministic():
    a = bench_input((1, 3, 4, 5))
    assert a.dtype == np.float32 and a.shape == (1, 3, 4, 5)
    np.testing.assert_array_equal(a, bench_input((1, 3, 4, 5)))
    assert a.reshape(-1)[1] == np.float32(np.sin(0.37))


def test_speed_ratios_round_by_round():
    from webcnn.bench import speed_ratios
    results = [
        {"system": "webcnn-throughput", "latency_p50_ms": 100.0, "latency_p50_by_round_ms": [96.0, 104.0]},
        {"system": "tfjs-webgl", "latency_p50_ms": 320.0, "latency_p50_by_round_ms": [330.0, 310.0]},
        {"system": "ort-native", "latency_p50_ms": 5.0, "latency_p50_by_round_ms": [5.0]},   # runs once
    ]
    speed = speed_ratios(results)
    assert speed["tfjs-webgl"]["ratio"] == pytest.approx(100 / 320, rel=1e-12)
    assert speed["tfjs-webgl"]["ratio_by_round"] == pytest.approx([96 / 330, 104 / 310], rel=1e-12)
    assert speed["ort-native"]["ratio"] == pytest.approx(20.0, rel=1e-12)
    assert "ratio_by_round" not in speed["ort-native"]
