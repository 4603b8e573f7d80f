"""Bundle determinism, the strict Content-Security-Policy page, the server's path checks, GPU-resident outputs, lost
contexts, progress and AbortSignal, and runs with no animation frames."""
import hashlib
import json
import urllib.error
import urllib.request
import warnings

import numpy as np
import pytest

import webcnn
from webcnn import zoo
from webcnn.serve import Server

from conftest import assert_close


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def unet_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "unet.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zoo.export(zoo.build("unet"), (1, 3, 64, 96), str(path))


def test_same_model_gives_byte_identical_bundle(tmp_path, unet_onnx):
    a, b = tmp_path / "a", tmp_path / "b"
    webcnn.compile(unet_onnx, out_dir=a)
    webcnn.compile(unet_onnx, out_dir=b)
    for name in ("model.json", "weights.bin"):
        assert _digest(a / name) == _digest(b / name), f"{name} differs between two compiles"
    manifest = json.loads((a / "model.json").read_text())
    assert manifest["format"] == "webcnn-bundle" and manifest["version"] == 2
    assert hashlib.sha256((a / "weights.bin").read_bytes()).hexdigest() == manifest["weightsFile"]["sha256"]


def test_torch_module_compiles_through_export(browser, tmp_path):
    import torch

    model = zoo.build("shufflenet_block")
    x = torch.randn(1, 3, 32, 32)
    webcnn.compile(model, x, out_dir=tmp_path)
    outputs, _, _ = browser.run_bundle(tmp_path, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    (got,) = outputs.values()
    assert_close("shufflenet_block", got, ref)


def test_runtime_works_under_strict_csp(browser, tmp_path, unet_onnx):
    """The page loads with `script-src 'self'` (no eval, no inline script) and runs a bundle by itself."""
    webcnn.compile(unet_onnx, out_dir=tmp_path)
    url = browser.mount(tmp_path)
    response = browser.page.goto(f"{browser.server.url}/runtime/harness.html?bundle={url}")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp and "unsafe-inline" not in csp
    browser.page.wait_for_function("() => document.getElementById('status').textContent.startsWith('{')",
                                   timeout=120000)
    status = json.loads(browser.page.text_content("#status"))
    browser.open("/runtime/harness.html")
    assert "error" not in status, status
    assert status["shape"] == [1, 3, 64, 96] and np.isfinite(status["sum"])
    assert status["violations"] == []


def test_server_refuses_path_traversal(tmp_path):
    (tmp_path / "inside.txt").write_text("ok")
    (tmp_path.parent / "secret.txt").write_text("secret")
    with Server({"data": tmp_path}) as server:
        assert urllib.request.urlopen(f"{server.url}/data/inside.txt").read() == b"ok"
        for path in ("/data/../secret.txt", "/data/%2e%2e/secret.txt", "/data/..%2fsecret.txt",
                     "/runtime/../../../../etc/passwd", "/nomount/x"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(server.url + path)
            assert err.value.code == 404, path


def test_server_on_a_busy_port_says_so():
    with Server({}) as first:
        port = int(first.url.rsplit(":", 1)[1])
        with pytest.raises(webcnn.WebcnnError, match=f"port {port} is already in use; pick another with --port"):
            Server({}, port=port)


def test_outputs_can_stay_on_gpu_and_be_sampled_in_the_same_context(browser, tmp_path, unet_onnx):
    """runToTexture leaves the output in a texture; the page's own shader reads it without a CPU copy."""
    webcnn.compile(unet_onnx, out_dir=tmp_path)
    url = browser.mount(tmp_path)
    result = browser.page.evaluate("""async (url) => {
      const { load } = await import('/runtime/webcnn.js');
      const canvas = document.getElementById('display');
      const model = await load(url, { canvas });
      const gl = model.gl;
      const n = model.manifest.inputs[0].shape.reduce((a, b) => a * b, 1);
      const input = new Float32Array(n).map((_, i) => Math.sin(i * 0.01));
      const reference = (await model.run(input)).output.data;
      const out = (await model.runToTexture(input)).output;
      // The page's own pass: copy channel 0 of the output texture into its own float texture, then read it.
      const vs = gl.createShader(gl.VERTEX_SHADER);
      gl.shaderSource(vs, '#version 300 es\\nvoid main(){vec2 p=vec2(float((gl_VertexID<<1)&2),float(gl_VertexID&2));gl_Position=vec4(p*2.0-1.0,0.0,1.0);}');
      gl.compileShader(vs);
      const fs = gl.createShader(gl.FRAGMENT_SHADER);
      gl.shaderSource(fs, '#version 300 es\\nprecision highp float;uniform highp sampler2D t;out vec4 o;void main(){o=texelFetch(t,ivec2(gl_FragCoord.xy),0);}');
      gl.compileShader(fs);
      const prog = gl.createProgram(); gl.attachShader(prog, vs); gl.attachShader(prog, fs); gl.linkProgram(prog);
      const dst = gl.createTexture(); gl.bindTexture(gl.TEXTURE_2D, dst);
      gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGBA32F, out.width, out.height);
      const fb = gl.createFramebuffer(); gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
      gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, dst, 0);
      gl.viewport(0, 0, out.width, out.height); gl.useProgram(prog);
      gl.activeTexture(gl.TEXTURE0); gl.bindTexture(gl.TEXTURE_2D, out.texture);
      gl.uniform1i(gl.getUniformLocation(prog, 't'), 0);
      gl.drawArrays(gl.TRIANGLES, 0, 3);
      const pixels = new Float32Array(out.width * out.height * 4);
      gl.readPixels(0, 0, out.width, out.height, gl.RGBA, gl.FLOAT, pixels);
      let err = 0;
      for (let i = 0; i < out.width * out.height; i++) err = Math.max(err, Math.abs(pixels[i * 4] - reference[i]));
      const error = gl.getError();
      model.dispose();
      return { err, error };
    }""", url)
    assert result["error"] == 0
    assert result["err"] <= 1e-6


def test_runtime_is_dependency_free_es_modules():
    import re
    from pathlib import Path

    runtime = Path(webcnn.__file__).parent / "runtime"
    for path in runtime.glob("*.js"):
        for spec in re.findall(r"^\s*(?:import|export)[^;]*?from\s+'([^']+)'", path.read_text(), re.M):
            assert spec.startswith("./"), f"{path.name} imports {spec}: the runtime must not depend on anything"


def test_lost_context_during_run_recovers_with_the_right_result(browser, tmp_path, unet_onnx):
    webcnn.compile(unet_onnx, out_dir=tmp_path)
    url = browser.mount(tmp_path)
    result = browser.page.evaluate("""async (url) => {
      const { load } = await import('/runtime/webcnn.js');
      const canvas = document.createElement('canvas');
      const model = await load(url, { canvas, budgetMs: 1 });
      const n = model.manifest.inputs[0].shape.reduce((a, b) => a * b, 1);
      const input = new Float32Array(n).map((_, i) => Math.cos(i * 0.003));
      const reference = (await model.run(input)).output.data;
      const lose = model.gl.getExtension('WEBGL_lose_context');
      const pending = model.run(input);
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      lose.loseContext();
      setTimeout(() => lose.restoreContext(), 50);
      const after = (await pending).output.data;
      let err = 0;
      for (let i = 0; i < after.length; i++) err = Math.max(err, Math.abs(after[i] - reference[i]));
      return { err, rebuilds: model.stats().rebuilds, n: after.length };
    }""", url)
    assert result["rebuilds"] >= 1
    assert result["err"] <= 1e-6, result


@pytest.mark.parametrize("phase", ["textures", "weights", "compile", "warmup"])
def test_lost_context_during_load_recovers_with_the_onnxruntime_result(browser, tmp_path, unet_onnx, phase):
    import onnxruntime as ort

    webcnn.compile(unet_onnx, out_dir=tmp_path)
    url = browser.mount(tmp_path)
    x = np.cos(np.arange(3 * 64 * 96, dtype=np.float64) * 0.003).astype(np.float32).reshape(1, 3, 64, 96)
    session = ort.InferenceSession(str(unet_onnx), providers=["CPUExecutionProvider"])
    reference = session.run(None, {session.get_inputs()[0].name: x})[0]
    result = browser.page.evaluate("""async ([url, phase]) => {
      const { load } = await import('/runtime/webcnn.js');
      const canvas = document.createElement('canvas');
      const gl = canvas.getContext('webgl2');
      const lose = gl.getExtension('WEBGL_lose_context');
      let lost = false;
      const onProgress = (p) => {
        if (lost || p.phase !== phase) return;
        lost = true;
        lose.loseContext();
        setTimeout(() => lose.restoreContext(), 50);
      };
      const model = await load(url, { gl, onProgress, budgetMs: 2 });
      const input = new Float32Array(3 * 64 * 96).map((_, i) => Math.cos(i * 0.003));
      const out = await model.run(input);
      const stats = model.stats();
      model.dispose();
      return { lost, rebuilds: stats.rebuilds, data: Array.from(out.output.data) };
    }""", [url, phase])
    assert result["lost"], f"the {phase} phase never reported progress"
    assert result["rebuilds"] >= 1
    assert_close(f"after losing the context during {phase}", np.array(result["data"]), reference)


def _reference(unet_onnx):
    import onnxruntime as ort

    x = np.cos(np.arange(3 * 64 * 96, dtype=np.float64) * 0.003).astype(np.float32).reshape(1, 3, 64, 96)
    session = ort.InferenceSession(str(unet_onnx), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_run_reports_progress_and_stops_on_abort(browser, tmp_path, unet_onnx):
    """A budgeted run reports its progress pass by pass; an AbortSignal stops it mid-run with an AbortError, and
    the model's next run gives the onnxruntime result."""
    webcnn.compile(unet_onnx, out_dir=tmp_path)
    url = browser.mount(tmp_path)
    result = browser.page.evaluate("""async (url) => {
      const { load } = await import('/runtime/webcnn.js');
      const model = await load(url, { canvas: document.createElement('canvas'), budgetMs: 1, adaptive: false });
      const input = new Float32Array(3 * 64 * 96).map((_, i) => Math.cos(i * 0.003));
      const progress = [];
      await model.run(input, { onProgress: (p) => progress.push([p.phase, p.done, p.total]) });
      const controller = new AbortController();
      let seen = 0, error = null;
      const before = model.stats().runs;
      try {
        await model.run(input, { signal: controller.signal, onProgress: () => { if (++seen === 3) controller.abort(); } });
      } catch (e) {
        error = e.name;
      }
      const stats = model.stats();
      const after = await model.run(input);
      model.dispose();
      return { progress, error, seen, completed: stats.runs - before, data: Array.from(after.output.data) };
    }""", url)
    progress = result["progress"]
    assert {p[0] for p in progress} == {"run"} and len(progress) > 3, progress[:5]
    done = [p[1] for p in progress]
    assert done == sorted(done) and done[-1] == progress[-1][2], progress   # monotonic, ends at the total
    assert result["error"] == "AbortError" and result["completed"] == 0, result
    assert result["seen"] < len(progress), "the aborted run went on to the end"
    assert_close("the run after an aborted one", np.array(result["data"]), _reference(unet_onnx))


@pytest.mark.parametrize("visibility", ["visible", "hidden"])
def test_run_finishes_without_animation_frames(browser, tmp_path, unet_onnx, visibility):
    """A background tab gets no requestAnimationFrame callbacks: the run goes on on timers. Headless Chromium keeps
    every tab visible (minimising its window or switching tabs changes nothing), so this page's rAF never calls
    back and, in the hidden case, document.visibilityState says so; WebGL and timers are the real ones."""
    webcnn.compile(unet_onnx, out_dir=tmp_path)
    url = browser.mount(tmp_path)
    page = browser.context.new_page()
    try:
        page.goto(browser.server.url + "/runtime/harness.html")
        result = page.evaluate("""async ([url, visibility]) => {
          let frames = 0;
          window.requestAnimationFrame = () => { frames++; return 0; };   // registered, never called back
          Object.defineProperty(document, 'visibilityState', { get: () => visibility });
          const { load } = await import('/runtime/webcnn.js');
          const t0 = performance.now();
          const model = await load(url, { canvas: document.createElement('canvas'), budgetMs: 4 });
          const input = new Float32Array(3 * 64 * 96).map((_, i) => Math.cos(i * 0.003));
          const out = await model.run(input);
          const stats = model.stats();
          model.dispose();
          return { ms: performance.now() - t0, frames, slices: stats.frames, data: Array.from(out.output.data) };
        }""", [url, visibility])
    finally:
        page.close()
    assert result["slices"] > 1, result["slices"]
    if visibility == "visible":
        assert result["frames"] > 0   # it asked for frames, and went on when none came
    assert_close(f"a run with no animation frames ({visibility})", np.array(result["data"]), _reference(unet_onnx))
