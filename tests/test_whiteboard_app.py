"""The whiteboard live app in headless Chromium with a fake camera playing a synthetic clip, plus its server,
the GPU input path it relies on, and the `whiteboard enhance` CLI.

How ink is read from the output: a pixel is ink when its darkest channel is below INK_BELOW (of 255); the
clean board is white (255), so this catches dark and coloured strokes alike. Ground truth is the clip's
board-plane ink mask (the generator's labels). F1 is computed inside the board, MARGIN px from its edges.
"""
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from webcnn.browser import Browser
from whiteboard import clip as clipgen
from whiteboard.app import app_mounts, app_server, model_bundle

ROOT = Path(__file__).resolve().parents[1]
# Screenshots go to the git-ignored out/ so a test run leaves the tree clean; WHITEBOARD_SCREENSHOTS=docs refreshes
# the committed ones.
SCREENSHOTS = ROOT / os.environ.get("WHITEBOARD_SCREENSHOTS", "out/screenshots")
INK_BELOW = 192
MARGIN = 6
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def ink_of(rgb):
    return rgb.min(axis=2) < INK_BELOW


def ink_f1(pred, truth):
    inner = np.zeros_like(truth)
    inner[MARGIN:-MARGIN, MARGIN:-MARGIN] = True
    p, t = pred & inner, truth & inner
    tp = (p & t).sum()
    return 2 * tp / max(1, p.sum() + t.sum())


def decode_png(data_url):
    data = base64.b64decode(data_url.split(",", 1)[1])
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def save_screenshot(page, name):
    """A small PNG of the whole page, for people to look at."""
    from PIL import Image

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"whiteboard_app_{name}.png"
    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)
    return path


@pytest.fixture(scope="module")
def bundle():
    with model_bundle() as path:
        yield path


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    clip = clipgen.make_clip()
    path = tmp_path_factory.mktemp("clip") / "clip.y4m"
    clipgen.write_y4m(clip, path)
    return clip, path


MEASURE_FRAMES = """(ms) => new Promise((resolve) => {
  const d = []; let last = null; const t0 = performance.now();
  function tick(ts) {
    if (last !== null) d.push(ts - last);
    last = ts;
    if (ts - t0 < ms) requestAnimationFrame(tick); else resolve(d);
  }
  requestAnimationFrame(tick);
})"""


def open_app(bundle, extra_args, query="?tag=1"):
    browser = Browser(extra_args=extra_args, page_path=f"/app/index.html{query}" if query is not None else "/runtime/harness.html",
                      mounts=app_mounts(bundle))
    browser.__enter__()
    browser.page.set_viewport_size({"width": 1100, "height": 520})
    return browser


class ActionWindows:
    """Page-clock windows of the test's own screenshots and canvas readbacks, which can stall a frame themselves."""

    def __init__(self, page):
        self.page, self.windows = page, []

    def __call__(self, fn, *args):
        t0 = self.page.evaluate("() => performance.now()")
        try:
            return fn(*args)
        finally:
            # the frame after an action also pays for it (a capture holds the compositor until it is done)
            self.windows.append((t0, self.page.evaluate("() => performance.now()") + 100, fn.__name__))

    def overlapping(self, frames):
        """The frames that overlap an action, each with the first action it overlaps."""
        return [next(name for a, b, name in self.windows if f[0] < b and f[1] > a) for f in frames
                if any(f[0] < b and f[1] > a for a, b, _ in self.windows)]


def board_output(page, frames):
    """The board memory now, checked to come from a model result on one of `frames` (read in one go)."""
    tag, png = page.evaluate("""() => {
      window.whiteboard.pipeline.draw('board');
      return [window.whiteboard.stats().resultTag, document.getElementById('output').toDataURL('image/png')];
    }""")
    assert tag in frames, f"the board came from frame {tag}, not from frames {min(frames)}-{max(frames)}"
    return decode_png(png)


def wait_for_results(page, frames, count, timeout_s):
    """Wait until `count` model results came from clip frames in `frames` (a set of frame numbers)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        tags = page.evaluate("() => window.whiteboard.stats().resultTags")
        hits = [t for t in tags if t in frames]
        if len(hits) >= count and tags[-1] in frames:
            return tags
        time.sleep(0.25)
    raise AssertionError(f"no {count} model results from frames {min(frames)}-{max(frames)} within {timeout_s} s; "
                         f"results came from frames {tags[-30:]}")


def test_live_app_with_fake_camera(bundle, clip_file):
    """See-through memory while the presenter stands, erased content gone after they leave, smooth display."""
    clip, y4m = clip_file
    t_start = time.time()
    browser = open_app(bundle, FAKE_CAMERA + [f"--use-file-for-fake-video-capture={y4m}"], query=None)
    try:
        page = browser.page
        # The machine's own frame timing (other work shares these cores): an idle page, same browser, same run.
        idle = np.array(page.evaluate(MEASURE_FRAMES, 5000))
        browser.open("/app/index.html?tag=1")
        page.wait_for_function("() => window.whiteboard && window.whiteboard.stats().updates > 0", timeout=90000)
        # Drag the four handles onto the board's corners; they are remembered across a reload.
        box = page.locator("#stage").bounding_box()
        for i, (x, y) in enumerate(clipgen.corners_normalised()):
            handle = page.locator(f'.handle[data-corner="{i}"]').bounding_box()
            page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=4)
            page.mouse.up()
        saved = json.loads(page.evaluate("() => localStorage.getItem('whiteboard.corners')"))
        assert np.abs(np.array(saved) - clipgen.corners_normalised()).max() < 0.01, saved
        browser.open("/app/index.html?tag=1")
        page.wait_for_function("() => window.whiteboard && window.whiteboard.stats().updates > 0", timeout=90000)
        assert np.abs(np.array(page.evaluate("() => window.whiteboard.pipeline.corners")) - saved).max() < 1e-6
        assert page.text_content("#messages") == "", page.text_content("#messages")

        # The memory must have seen the empty board, then the presenter standing for a while.
        empty, stand, gone = (set(clip.frames_in(p)) for p in ("empty", "stand", "gone"))
        wait_for_results(page, empty, 1, 2 * clip.frames / clipgen.FPS + 30)
        page.evaluate("() => window.whiteboard.resetTiming()")
        start_updates, start_time = page.evaluate("() => window.whiteboard.stats().updates"), time.time()
        # A clean window of the live app (presenter walking in and standing, the model running): the rest of
        # the run also holds the test's own screenshots and canvas readbacks, each of which can stall a frame.
        live = np.array(page.evaluate(MEASURE_FRAMES, 6000))
        live_updates = page.evaluate("() => window.whiteboard.stats().updates") - start_updates
        late_stand = {f for f in stand if f >= min(stand) + 2 * clipgen.FPS}
        wait_for_results(page, late_stand, 1, 60)
        action = ActionWindows(page)
        standing = action(board_output, page, stand)
        action(save_screenshot, page, "standing")
        page.select_option("#view", "classes")
        page.wait_for_timeout(300)
        action(save_screenshot, page, "classes")
        page.select_option("#view", "board")
        late_gone = {f for f in gone if f >= min(gone) + clipgen.FPS}
        wait_for_results(page, late_gone, 1, 60)
        after = action(board_output, page, gone)
        action(save_screenshot, page, "after")
        stats = page.evaluate("() => window.whiteboard.stats()")
        by_test = action.overlapping(stats["longFrames"])
        print("\nresult frames:", stats["resultTags"], "elapsed", round(time.time() - t_start, 1))
        update_rate = (stats["updates"] - start_updates) / (time.time() - start_time)
        # The same page with the model frozen (camera preview and display only): the app's own baseline.
        page.click("#freeze")
        page.wait_for_function("() => !window.whiteboard.stats().busy", timeout=60000)
        frozen = np.array(page.evaluate(MEASURE_FRAMES, 5000))
        page.click("#freeze")
        # A lost and restored WebGL context: the app goes on with a fresh pipeline and a real board.
        page.evaluate("""async () => {
          window.oldPipeline = window.whiteboard.pipeline;
          const ext = window.whiteboard.model.gl.getExtension('WEBGL_lose_context');
          ext.loseContext();
          await new Promise((r) => setTimeout(r, 300));
          ext.restoreContext();
        }""")
        page.wait_for_function("""() => window.whiteboard.pipeline !== window.oldPipeline
          && window.whiteboard.pipeline.results >= 1 && window.whiteboard.model.stats().rebuilds >= 1""", timeout=90000)
        restored = board_output(page, set(range(clip.frames)))
        assert page.evaluate("() => window.whiteboard.model.gl.getError()") == 0
        # Snapshot PNG and record-to-WebM give real files (last: capturing costs frames).
        with page.expect_download() as download:
            page.click("#snapshot")
        snapshot = cv2.imread(download.value.path())
        page.click("#record")
        page.wait_for_timeout(2500)
        with page.expect_download() as download:
            page.click("#record")
        webm = Path(download.value.path()).read_bytes()
        errors = list(browser.errors)
    finally:
        browser.__exit__(None, None, None)

    cv2.imwrite(str(SCREENSHOTS / "whiteboard_app_output_standing.png"), cv2.cvtColor(standing, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(SCREENSHOTS / "whiteboard_app_output_after.png"), cv2.cvtColor(after, cv2.COLOR_RGB2BGR))
    f1_stand = ink_f1(ink_of(standing), clip.before.ink)
    f1_after = ink_f1(ink_of(after), clip.after.ink)
    covered = clip.covered & clip.before.ink
    recall_covered = (ink_of(standing) & covered).sum() / covered.sum()
    erased_left = (ink_of(after) & clip.erased).sum() / max(1, (clip.before.ink & clip.erased).sum())
    print(f"\nBENCH idle page: {1000 / idle.mean():.1f} fps, frame p50 {np.median(idle):.1f} ms, p99 "
          f"{np.percentile(idle, 99):.1f} ms, max {idle.max():.1f} ms, {(idle > 50).sum()} of {len(idle)} frames over 50 ms")
    print(f"BENCH app, model frozen: {1000 / frozen.mean():.1f} fps, frame p50 {np.median(frozen):.1f} ms, p99 "
          f"{np.percentile(frozen, 99):.1f} ms, max {frozen.max():.1f} ms, {(frozen > 50).sum()} of {len(frozen)} frames over 50 ms")
    print(f"BENCH whiteboard live, clean 6 s window: {1000 / live.mean():.1f} fps, frame p50 {np.median(live):.1f} ms, "
          f"p99 {np.percentile(live, 99):.1f} ms, max {live.max():.1f} ms, {(live > 50).sum()} of {len(live)} frames "
          f"over 50 ms, {live_updates} model results in the window")
    print(f"BENCH whiteboard live, whole run (with the test's screenshots and readbacks): display {stats['meanFps']:.1f} fps, frame p50 {stats['p50']:.1f} ms, "
          f"p99 {stats['p99']:.1f} ms, max {stats['max']:.1f} ms, {stats['over50']} of {stats['frames']} frames "
          f"over 50 ms ({len(by_test)} of them during the test's own actions: {', '.join(by_test) or 'none'}); model {update_rate:.2f} updates/s ({stats['updates']} results), budget "
          f"{stats['budgetMs']:.1f} ms; ink F1 standing {f1_stand:.3f}, after {f1_after:.3f}; covered-ink recall "
          f"{recall_covered:.3f}; erased ink left {erased_left:.3f}")
    assert not errors, errors
    assert snapshot is not None and snapshot.shape == (360, 640, 3) and 0.02 < ink_of(snapshot).mean() < 0.2
    assert webm[:4] == bytes.fromhex("1a45dfa3") and len(webm) > 1000, len(webm)
    assert 0.02 < ink_of(restored).mean() < 0.2, "no real board after a lost context"
    assert f1_stand >= 0.9, f1_stand
    assert f1_after >= 0.9, f1_after
    assert recall_covered >= 0.85, "strokes behind the presenter are not shown from memory"
    assert erased_left <= 0.05, "erased strokes are still shown after the presenter left"
    # Timing on a shared software GPU is noisy: assert only that the display never stalled for long.
    assert stats["frames"] > 100 and stats["p50"] < 25, stats
    assert live_updates >= 1, "the model produced no result during the measured window"


def test_rendered_gpu_input_gives_the_onnxruntime_result(bundle):
    """inputTexture() + run(null): the rectified frame rendered straight into the model's input texture."""
    import onnxruntime as ort

    from whiteboard.app import MODEL_PATH

    clip = clipgen.make_clip()
    frame = clipgen.render_frame(clip, 3)
    ok, png = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    with Browser(page_path="/app/enhance.html", mounts=app_mounts(bundle)) as browser:
        result = browser.page.evaluate("""async (b64) => {
          const { load } = await import('/runtime/webcnn.js');
          const { BoardPipeline } = await import('/app/pipeline.js');
          const gl = document.getElementById('output').getContext('webgl2');
          const model = await load('/model/', { gl });
          const input = model.inputTexture('image');
          const pipeline = new BoardPipeline(gl, model);
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const bitmap = await createImageBitmap(new Blob([bytes]), { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
          pipeline.uploadFrame(bitmap);
          pipeline.writeModelInput();
          const { probs } = await model.run(null, { mode: 'throughput' });
          let missing = '';
          try { model.inputTexture('nope'); } catch (e) { missing = e.message; }
          const error = gl.getError();
          model.dispose();
          return { probs: Array.from(probs.data), shape: probs.shape, layout: [input.width, input.height, input.cols, input.rows, input.slices],
                   missing, error };
        }""", base64.b64encode(png.tobytes()).decode())
    assert result["error"] == 0 and result["layout"] == [640, 360, 1, 1, 1]
    assert 'no input named "nope"' in result["missing"]
    session = ort.InferenceSession(str(MODEL_PATH), providers=["CPUExecutionProvider"])
    ref = session.run(None, {"image": frame.astype(np.float32).transpose(2, 0, 1)[None] / 255})[0]
    got = np.array(result["probs"], np.float32).reshape(result["shape"])
    err = np.abs(got - ref).max()
    assert err <= 1e-3, f"max abs error {err:.2e} against onnxruntime"


def test_server_serves_only_the_app_runtime_and_model(bundle):
    with app_server(bundle) as server:
        for path in ("/app/", "/app/app.js", "/runtime/webcnn.js", "/model/model.json"):
            with urllib.request.urlopen(server.url + path) as response:
                assert response.status == 200, path
                assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        for path in ("/app/../app.py", "/app/%2e%2e/app.py", "/app/..%2fenhance.py", "/model/../../../../etc/passwd",
                     "/app/../assets/whiteboard.onnx", "/assets/whiteboard.onnx", "/", "/etc/passwd"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(server.url + path)
            assert err.value.code == 404, path


def message_reason(page, kind):
    page.wait_for_selector(f'#messages [data-kind="{kind}"]', timeout=60000)
    el = page.locator(f'#messages [data-kind="{kind}"]')
    return el.get_attribute("data-reason"), el.text_content()


def test_page_errors_are_clear_messages(bundle, tmp_path):
    """Permission refused, no camera, no WebGL2 and a model that fails to load each say so in the page; with no
    camera, a video file chosen in the page is the source."""
    clip = clipgen.make_clip()
    video = tmp_path / "board.webm"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"VP80"), clipgen.FPS, (clipgen.W, clipgen.H))
    for i in range(20):
        writer.write(cv2.cvtColor(clipgen.render_frame(clip, i), cv2.COLOR_RGB2BGR))
    writer.release()
    # A camera exists but nobody grants the permission.
    browser = open_app(bundle, ["--use-fake-device-for-media-stream"], query="?model=/missing/")
    try:
        reason, text = message_reason(browser.page, "camera")
        assert reason == "permission" and "permission was refused" in text, text
        reason, text = message_reason(browser.page, "model")
        assert "failed to load" in text and "/missing/" in text, text
    finally:
        browser.__exit__(None, None, None)
    # Permission would be granted, but there is no camera at all.
    browser = open_app(bundle, ["--use-fake-ui-for-media-stream"], query="")
    try:
        page = browser.page
        reason, text = message_reason(page, "camera")
        assert reason == "no-camera" and "No camera" in text, text
        # A video file instead: the pipeline runs on it and the camera message goes.
        page.wait_for_function("() => window.whiteboard.pipeline", timeout=90000)
        page.evaluate("(c) => window.whiteboard.setCorners(c)", clipgen.corners_normalised())
        page.set_input_files("#file", str(video))
        page.wait_for_function("() => window.whiteboard.stats().updates >= 2", timeout=90000)
        assert page.locator("#messages p").count() == 0, page.text_content("#messages")
        from_file = board_output(page, {-1})
        browser.context.add_init_script("""(() => { const get = HTMLCanvasElement.prototype.getContext;
          HTMLCanvasElement.prototype.getContext = function (type, ...rest) {
            return type === 'webgl2' ? null : get.call(this, type, ...rest); }; })()""")
        browser.open("/app/index.html")
        reason, text = message_reason(browser.page, "no-webgl2")
        assert "no WebGL2" in text, text
        save_screenshot(browser.page, "no_webgl2")
        assert not browser.errors, browser.errors
    finally:
        browser.__exit__(None, None, None)
    f1 = ink_f1(ink_of(from_file), clip.before.ink)
    assert f1 >= 0.9, f"video file input: ink F1 {f1:.3f}"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "whiteboard.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_enhance_cli_image_and_video(tmp_path):
    clip = clipgen.make_clip()
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), cv2.cvtColor(clipgen.render_frame(clip, 2), cv2.COLOR_RGB2BGR))
    corners = ",".join(str(v) for v in clipgen.QUAD.ravel())
    out = tmp_path / "clean.png"
    done = run_cli("enhance", image, "-o", out, "--corners", corners, "--size", "640x360")
    assert done.returncode == 0, done.stderr
    clean = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert clean.shape == (360, 640, 3)
    f1 = ink_f1(ink_of(clean), clip.before.ink)
    assert f1 >= 0.9, f1

    video = tmp_path / "clip.y4m"
    small = clipgen.Clip(**{**clip.__dict__, "phase_of": clip.phase_of[:3], "person_x": clip.person_x[:3]})
    clipgen.write_y4m(small, video)
    out_video = tmp_path / "clean.avi"
    done = run_cli("enhance", video, "-o", out_video)
    assert done.returncode == 0, done.stderr
    assert "3/3" in done.stderr, done.stderr   # the progress bar
    capture = cv2.VideoCapture(str(out_video))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 3


SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "whiteboard_sample.jpg"
UNET_ONNX = Path(__file__).resolve().parents[1] / "examples" / "unet.onnx"


@pytest.mark.parametrize("make, args, expected", [
    (None, ["missing.png", "-o", "x.png"], "does not exist"),
    (lambda p: p.write_text("hello"), ["notes.txt", "-o", "x.png"], "unsupported input type '.txt'"),
    (lambda p: p.write_bytes(b"not a png"), ["bad.png", "-o", "x.png"], "cannot read"),
    (lambda p: p.write_bytes(b"not a video"), ["bad.mp4", "-o", "x.mp4"], "cannot read"),
    (lambda p: p.write_bytes(SAMPLE.read_bytes()[:4000]), ["cut.jpg", "-o", "x.png"], "truncated"),
    (lambda p: Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(p, save_all=True, append_images=[
        Image.fromarray(np.full((8, 8, 3), 255, np.uint8))]), ["anim.gif", "-o", "x.png"], "animation of 2 frames"),
    (lambda p: cv2.imwrite(str(p), np.zeros((8, 8, 3), np.uint8)), ["ok.png", "-o", "x.mp4"], "use .png"),
    (lambda p: cv2.imwrite(str(p), np.zeros((8, 8, 3), np.uint8)), ["ok.png", "-o", "x.png", "--corners", "1,2"], "8 comma-separated"),
    (lambda p: cv2.imwrite(str(p), np.zeros((80, 80, 3), np.uint8)), ["ok.png", "-o", "x.png", "--corners",
                                                                      "0,0,0,80,80,80,80,0"], "do not outline a board"),
    (lambda p: cv2.imwrite(str(p), np.zeros((8, 8, 3), np.uint8)), ["ok.png", "-o", "x.png", "--model",
                                                                    str(UNET_ONNX)], "not a whiteboard segmentation model"),
])
def test_enhance_cli_rejects_bad_input_in_one_line(tmp_path, make, args, expected):
    if make:
        make(tmp_path / args[0])
    done = run_cli("enhance", *[str(tmp_path / a) if i in (0, 2) else a for i, a in enumerate(args)])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr

