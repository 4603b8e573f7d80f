"""The error corpus: each bad input gets one clear message, no traceback, no hang and no partial output."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import webcnn

TIMEOUT = 120


def conv_model(input_type=TensorProto.FLOAT, dims=(1, 3, 8, 8), weight=None, extra_nodes=(), drop_init=False):
    w = weight if weight is not None else np.ones((4, 3, 3, 3), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv0", pads=[1, 1, 1, 1])] + list(extra_nodes)
    out = nodes[-1].output[0]
    inits = [] if drop_init else [numpy_helper.from_array(w, "w")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", input_type, dims)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["n", "c", "h", "w"])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _truncated(path):
    data = conv_model(weight=np.ones((64, 3, 3, 3), np.float32)).SerializeToString()
    path.write_bytes(data[: len(data) // 2])


def _unsupported(path):
    topk = helper.make_node("TopK", ["y", "k"], ["v", "i"], name="topk0")
    model = conv_model(extra_nodes=[topk])
    model.graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), "k"))
    onnx.save(model, path)


def _unsupported_attribute(path):
    model = conv_model(extra_nodes=[helper.make_node("Resize", ["y", "", "s"], ["r"], name="resize0", mode="linear",
                                                     antialias=1)])
    model.graph.initializer.append(numpy_helper.from_array(np.array([1, 1, 0.5, 0.5], np.float32), "s"))
    model.opset_import[0].version = 18   # antialias came with opset 18
    onnx.save(model, path)


def _unsupported_reduce_axes(path):
    model = conv_model(extra_nodes=[helper.make_node("ReduceMean", ["y"], ["r"], name="reduce0", axes=[0, 2])])
    model.opset_import[0].version = 13
    onnx.save(model, path)


MODEL_CORPUS = {
    # name: (writer, phrases the single error line must contain)
    "truncated": (_truncated, ["not a readable ONNX model"]),
    "missing_initializer": (lambda p: onnx.save(conv_model(drop_init=True), p), ["'w'"]),
    "dynamic_shape": (lambda p: onnx.save(conv_model(dims=("N", 3, "H", "W")), p), ["symbolic", "--input-shape"]),
    "unsupported_op": (_unsupported, ["topk0", "TopK", "Supported:"]),
    "unsupported_attribute": (_unsupported_attribute, ["resize0", "antialias=1", "Supported:"]),
    "unsupported_reduce_axes": (_unsupported_reduce_axes, ["reduce0", "ReduceMean", "axes [0, 2]", "channel axis (1)",
                                                           "its H axis, its W axis or both"]),
    "wrong_rank_weight": (lambda p: onnx.save(conv_model(weight=np.ones((4, 3, 3), np.float32)), p), ["weight"]),
    "non_float_input": (lambda p: onnx.save(conv_model(input_type=TensorProto.INT64), p), ["'x'", "INT64", "float32"]),
    "not_onnx": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64)), ["ONNX"]),
    "empty_file": (lambda p: p.write_bytes(b""), ["ONNX"]),
}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "webcnn.cli", *args], capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, "WEBCNN_DEBUG": ""})


@pytest.mark.parametrize("case", list(MODEL_CORPUS))
def test_bad_model_gets_one_clear_message(tmp_path, case):
    writer, phrases = MODEL_CORPUS[case]
    model_path = tmp_path / f"{case}.onnx"
    writer(model_path)
    out_dir = tmp_path / "bundle"
    result = run_cli("compile", str(model_path), "-o", str(out_dir))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for phrase in phrases:
        assert phrase in lines[0], f"{case}: {phrase!r} not in {lines[0]!r}"
    assert not out_dir.exists(), "a failed compile must not leave output behind"


def test_missing_model_file(tmp_path):
    result = run_cli("compile", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "b"))
    assert result.returncode == 2 and "not found" in result.stderr and "Traceback" not in result.stderr


def test_verify_names_a_reference_that_cannot_run(tmp_path):
    """onnxruntime refuses dilations with auto_pad SAME_*: verify says so in one line, not in a traceback."""
    model = conv_model()
    del model.graph.node[0].attribute[:]
    model.graph.node[0].attribute.extend([helper.make_attribute("auto_pad", "SAME_UPPER"),
                                          helper.make_attribute("dilations", [2, 2])])
    path = tmp_path / "dilated_same.onnx"
    onnx.save(model, path)
    result = run_cli("verify", str(path))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: onnxruntime"), result.stderr
    assert "Dilation" in lines[0] and "Traceback" not in result.stderr + result.stdout


def test_kernels_against_an_unknown_revision(tmp_path):
    path = tmp_path / "conv.onnx"
    onnx.save(conv_model(), path)
    result = run_cli("kernels", "--profile", str(path), "--against", "no-such-revision")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no-such-revision" in lines[0] and "pass a commit" in lines[0], result.stderr
    result = run_cli("kernels", "--against", "HEAD")
    assert result.returncode == 2 and "--against needs --profile" in result.stderr, result.stderr


def test_python_api_raises_webcnn_error():
    with pytest.raises(webcnn.UnsupportedError, match="TopK"):
        model = conv_model(extra_nodes=[helper.make_node("TopK", ["y", "k"], ["v", "i"], name="topk0")])
        model.graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), "k"))
        webcnn.compile(model)


# -- tampered bundles: the runtime must reject them before touching the GPU


def _flip_byte(d):
    data = bytearray((d / "weights.bin").read_bytes())
    data[len(data) // 2] ^= 0x40
    (d / "weights.bin").write_bytes(bytes(data))


def _edit_json(d, fn):
    manifest = json.loads((d / "model.json").read_text())
    fn(manifest)
    (d / "model.json").write_text(json.dumps(manifest))


BUNDLE_CORPUS = {
    "hash_mismatch": (_flip_byte, "bundle-hash", ["corrupt", "sha256"]),
    "truncated_weights": (lambda d: (d / "weights.bin").write_bytes((d / "weights.bin").read_bytes()[:100]),
                          "bundle-weights", ["truncated"]),
    "unknown_version": (lambda d: _edit_json(d, lambda m: m.update(version=99)), "bundle-version", ["version 99"]),
    "missing_passes": (lambda d: _edit_json(d, lambda m: m.pop("passes")), "bundle-schema", ['"passes"']),
    "missing_weight_fields": (lambda d: _edit_json(d, lambda m: m["weights"][0].pop("sha256")), "bundle-schema",
                              ["weight 0"]),
    "missing_chunk_hashes": (lambda d: _edit_json(d, lambda m: m["weightsFile"]["chunks"].pop()), "bundle-schema",
                             ["weightsFile.chunks"]),
    "old_version": (lambda d: _edit_json(d, lambda m: m.update(version=1)), "bundle-version", ["version 1"]),
    "tile_out_of_range": (lambda d: _edit_json(d, lambda m: m["passes"][0]["tiles"].append([0, 0, 99999, 1]) or
                                               m["passes"][0]["tileFlops"].append(1)), "bundle-schema", ["tile"]),
    "not_json": (lambda d: (d / "model.json").write_text("{not json"), "bundle-json", ["not valid JSON"]),
    "missing_weights_file": (lambda d: (d / "weights.bin").unlink(), "fetch", ["HTTP 404"]),
}

COUNT_CONTEXTS = """() => {
  window.__contexts = 0;
  for (const C of [HTMLCanvasElement, OffscreenCanvas]) {
    const original = C.prototype.getContext;
    C.prototype.getContext = function (...args) { window.__contexts++; return original.apply(this, args); };
  }
}"""


@pytest.mark.parametrize("case", list(BUNDLE_CORPUS))
def test_tampered_bundle_rejected_before_gpu_work(browser, tmp_path, case):
    tamper, code, phrases = BUNDLE_CORPUS[case]
    webcnn.compile(conv_model(weight=np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32)),
                   out_dir=tmp_path)
    tamper(tmp_path)
    browser.open("/runtime/harness.html")
    browser.page.evaluate(COUNT_CONTEXTS)
    url = browser.mount(tmp_path)
    result = browser.page.evaluate("(url) => window.harness.load('bad', url, {})", url)
    assert "error" in result, f"{case}: the tampered bundle loaded"
    assert result["error"]["code"] == code, result
    for phrase in phrases:
        assert phrase in result["error"]["message"], result["error"]["message"]
    assert browser.page.evaluate("() => window.__contexts") == 0, "a WebGL context was created before validation"
    browser.errors.clear()  # the 404 of a missing file is logged by the browser itself


RECORD_DIGESTS = """() => {
  window.__digests = [];
  const digest = SubtleCrypto.prototype.digest;
  SubtleCrypto.prototype.digest = function (algorithm, data) { window.__digests.push(data.byteLength); return digest.call(this, algorithm, data); };
}"""


def test_weights_are_verified_in_chunks(browser, tmp_path):
    # Chromium hashes on the main thread (MobileNetV2's 14 MB weights: one 18 ms digest): no digest may take more
    # than a chunk, and the chunks must cover the whole file.
    weight = np.random.default_rng(0).standard_normal((512, 64, 3, 3)).astype(np.float32)   # 1.2 MB as texels
    webcnn.compile(conv_model(dims=(1, 64, 8, 8), weight=weight), out_dir=tmp_path)
    manifest = json.loads((tmp_path / "model.json").read_text())
    size, chunk = manifest["weightsFile"]["bytes"], manifest["weightsFile"]["chunkBytes"]
    assert size > chunk
    browser.open("/runtime/harness.html")
    browser.page.evaluate(RECORD_DIGESTS)
    result = browser.page.evaluate("(url) => window.harness.load('chunked', url, {})", browser.mount(tmp_path))
    assert "error" not in result, result
    digests = browser.page.evaluate("() => window.__digests")
    assert max(digests) <= chunk and sum(digests) == size, (digests, size, chunk)
