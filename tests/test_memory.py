"""Memory: the texture plan against its lower bound, zero-copy concats, fp16 storage, and no GL object leaks."""

import pytest
import torch

from webcnn import zoo
from webcnn.compiler import compile as compile_model

from conftest import export_quietly

WHITEBOARD = "src/whiteboard/assets/whiteboard.onnx"
# Total texture bytes / (peak live activations + weights), as `webcnn compile --stats` reports it. Issue 6 asks for
# <= 1.25, for every network (the ShuffleNet block was at 1.40 before plain inner tensors shared its output's rows).
RATIO_BOUND = {"mobilenetv2": 1.25, "resnet18": 1.25, "unet": 1.25, "densenet_block": 1.25,
               "shufflenet_block": 1.25, "whiteboard": 1.25}


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("mem")

    def get(name):
        if name == "whiteboard":
            return WHITEBOARD
        return export_quietly(zoo.build(name), zoo.NETWORKS[name][1], out / f"{name}.onnx")
    return get


@pytest.mark.parametrize("name", list(RATIO_BOUND))
def test_texture_bytes_near_lower_bound(onnx_path, name):
    m = compile_model(onnx_path(name)).manifest["totals"]["memory"]
    assert m["lowerBoundBytes"] == m["peakLiveActivationBytes"] + m["weightTextureBytes"]
    assert m["textureBytes"] >= m["lowerBoundBytes"]
    assert m["ratio"] <= RATIO_BOUND[name], m


def test_dense_and_unet_concats_copy_nothing(onnx_path):
    for name in ("densenet_block", "unet"):
        manifest = compile_model(onnx_path(name)).manifest
        ops = [p["op"] for p in manifest["passes"]]
        assert not any(op.startswith(("Concat", "Copy")) for op in ops), ops
        # the convs after each concat read its parts straight from the producers' textures
        readers = [p for p in manifest["passes"] if len([b for b in p["inputs"] if "texture" in b]) >= 2]
        assert readers, "no pass reads a multi-part (concatenated) tensor"


def test_classifier_head_is_laid_out_square(onnx_path):
    # 250 slices at 1x1 had filled two 224-texel rows: one-row draws, which SwiftShader runs on one thread with half
    # of each 2x2 quad idle (MobileNetV2's Gemm took 4.2 ms of GPU-process CPU; 1.8 ms laid out square).
    manifest = compile_model(onnx_path("mobilenetv2")).manifest
    part = manifest["outputs"][0]["parts"][0]
    assert (part["slices"], part["cols"], part["rows"]) == (250, 16, 16)
    head = manifest["passes"][-1]
    assert head["op"] == "Conv:dense" and max(t[3] for t in head["tiles"]) >= 8, head["tiles"]


def tiny_conv_onnx(tmp_path, shape):
    """A seeded conv-relu-conv network: small enough to run many times in the browser."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    return export_quietly(model, shape, tmp_path / "m.onnx")


RECORD_FORMATS = """() => {
  window.__formats = [];
  const proto = WebGL2RenderingContext.prototype;
  const s2 = proto.texStorage2D, s3 = proto.texStorage3D;
  proto.texStorage2D = function (t, l, f, w, h) { window.__formats.push([f, w * h]); return s2.apply(this, arguments); };
  proto.texStorage3D = function (t, l, f, w, h, d) { window.__formats.push([f, w * h * d]); return s3.apply(this, arguments); };
}"""


def test_fp16_storage_allocates_half_float_textures(browser, tmp_path):
    """fp16 storage: every activation texture is RGBA16F (half the bytes); weights stay RGBA32F."""
    path = tiny_conv_onnx(tmp_path, (1, 3, 16, 24))
    manifest = compile_model(path, out_dir=tmp_path / "b").manifest
    activations = sum(t["width"] * t["height"] * t.get("layers", 1) for t in manifest["textures"])
    weights = sum(w["width"] * w["height"] for w in manifest["weights"])
    RGBA32F, RGBA16F = 0x8814, 0x881A
    texels, stats = {}, {}
    try:
        for precision in ("fp32", "fp16"):
            browser.page.evaluate(RECORD_FORMATS)
            model_id = browser.load(tmp_path / "b", precision=precision)
            stats[precision] = browser.last_load["stats"]
            formats = browser.page.evaluate("() => window.__formats")
            browser.dispose(model_id)
            texels[precision] = {f: sum(n for g, n in formats if g == f) for f in (RGBA32F, RGBA16F)}
            browser.open("/runtime/harness.html")
    finally:
        browser.open("/runtime/harness.html")
    assert texels["fp32"] == {RGBA32F: activations + weights, RGBA16F: 0}, texels
    assert texels["fp16"] == {RGBA32F: weights, RGBA16F: activations}, texels
    assert stats["fp16"]["precision"] == "fp16"
    assert stats["fp32"]["textureBytes"] - stats["fp16"]["textureBytes"] == activations * 8


LEAK_CHECK = """async ([url, runs]) => {
  const counts = {};
  const proto = WebGL2RenderingContext.prototype;
  for (const kind of ['Texture', 'Buffer', 'Framebuffer', 'Query', 'Program', 'Shader', 'VertexArray']) {
    for (const verb of ['create', 'delete']) {
      const name = verb + kind;
      const original = proto[name];
      proto[name] = function (...args) { counts[kind] = (counts[kind] || 0) + (verb === 'create' ? 1 : -1); return original.apply(this, args); };
    }
  }
  const fence = proto.fenceSync, drop = proto.deleteSync;
  proto.fenceSync = function (...a) { counts.Sync = (counts.Sync || 0) + 1; return fence.apply(this, a); };
  proto.deleteSync = function (...a) { counts.Sync = (counts.Sync || 0) - 1; return drop.apply(this, a); };
  // Frames at full speed: this test is about GL objects, not timing.
  window.requestAnimationFrame = (cb) => setTimeout(() => cb(performance.now()), 0);
  const { load } = await import('/runtime/webcnn.js');
  const model = await load(url, { precision: 'fp32' });
  const x = new Float32Array(model.manifest.inputs[0].shape.reduce((a, b) => a * b, 1)).fill(0.25);
  const first = await model.run(x, { mode: 'throughput' });
  const after1 = { ...counts, stats: model.stats() };
  let last = first;
  for (let i = 1; i < runs; i++) last = await model.run(x, i % 2 ? { mode: 'throughput' } : {});
  await model.runToTexture(x);
  const afterN = { ...counts, stats: model.stats() };
  model.dispose();
  const same = Object.values(first)[0].data.every((v, i) => v === Object.values(last)[0].data[i]);
  return { after1, afterN, disposed: { ...counts }, same };
}"""


def test_1000_inferences_leave_gl_objects_unchanged(browser, tmp_path):
    path = tiny_conv_onnx(tmp_path, (1, 3, 8, 16))
    compile_model(path, out_dir=tmp_path / "b")
    url = browser.mount(tmp_path / "b")
    try:
        r = browser.page.evaluate(LEAK_CHECK, [url, 1000])
    finally:
        browser.open("/runtime/harness.html")   # drop the wrapped prototype
    a, b = r["after1"], r["afterN"]
    for kind in ("Texture", "Buffer", "Framebuffer", "Query", "Program", "Shader", "VertexArray", "Sync"):
        assert a.get(kind, 0) == b.get(kind, 0), (kind, a, b)
    assert a["stats"]["textures"] == b["stats"]["textures"] and a["stats"]["buffers"] == b["stats"]["buffers"]
    assert b["stats"]["runs"] == 1001
    assert r["same"]
    # dispose() frees every texture, buffer, framebuffer and program it made
    for kind in ("Texture", "Buffer", "Framebuffer", "Program"):
        assert r["disposed"].get(kind, 0) == 0, r["disposed"]
