"""`whiteboard enhance`: an image or a video through the live app's pipeline and shaders, in headless Chromium.

  whiteboard enhance board.jpg -o clean.png
  whiteboard enhance lecture.mp4 -o clean.mp4          # one model run per frame, with a progress bar
  whiteboard enhance lecture.mp4 -o board.png          # the final clean board of a video
  whiteboard enhance photo.jpg -o clean.png --corners 102,80,1800,60,1850,1000,90,1040
"""
from __future__ import annotations

import base64
import contextlib
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from webcnn.errors import WebcnnError

from .app import MODEL_PATH, app_mounts, model_bundle

IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
VIDEO_TYPES = (".mp4", ".webm", ".avi", ".y4m", ".mov", ".mkv")
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".webm": "VP80", ".mkv": "MJPG"}
MAX_SIDE = 1920


def parse_corners(text, width, height):
    """'x,y,x,y,x,y,x,y' in input pixels (top-left, top-right, bottom-right, bottom-left) -> normalised."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 8:
        raise WebcnnError(f"--corners needs 8 comma-separated numbers (x,y of top-left, top-right, bottom-right, "
                          f"bottom-left in input pixels), got {text!r}")
    p = np.array(values).reshape(4, 2)
    edges = np.roll(p, -1, axis=0) - p
    following = np.roll(edges, -1, axis=0)
    turns = edges[:, 0] * following[:, 1] - edges[:, 1] * following[:, 0]
    area = abs(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])) / 2
    # Top-left, top-right, bottom-right, bottom-left turns clockwise on screen: a positive cross product at every
    # corner (image y points down). Another order would mirror or twist the board.
    if not np.all(turns > 0) or area < 1e-3 * width * height:
        raise WebcnnError(f"--corners {text} do not outline a board: give 4 corners of a convex quadrilateral, in the "
                          "order top-left, top-right, bottom-right, bottom-left, covering at least 0.1% of the image")
    return (p / [width, height]).tolist()


def output_size(width, height, corners=None, size=None):
    """The board's size: --size WxH, else the input's (or the corners' quad's) size, at most MAX_SIDE."""
    if size:
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise WebcnnError(f"--size must look like 1280x720, got {size!r}") from None
        if not (16 <= w <= 4096 and 16 <= h <= 4096):
            raise WebcnnError(f"--size {size} is out of range; each side must be 16 to 4096 pixels")
        return w, h
    if corners:
        p = np.array(corners) * [width, height]
        w = (np.linalg.norm(p[1] - p[0]) + np.linalg.norm(p[2] - p[3])) / 2
        h = (np.linalg.norm(p[3] - p[0]) + np.linalg.norm(p[2] - p[1])) / 2
    else:
        w, h = width, height
    scale = min(1.0, MAX_SIDE / max(w, h))
    return max(16, int(round(w * scale))), max(16, int(round(h * scale)))


class Enhancer:
    """One headless Chromium page holding the model and the pipeline; frames go in one at a time."""

    def __init__(self, out_width, out_height, corners=None, model_path=MODEL_PATH):
        self.size = (out_width, out_height)
        self.corners = corners
        self.model_path = model_path

    def __enter__(self):
        from webcnn.browser import Browser

        self._bundle = model_bundle(self.model_path)
        bundle = self._bundle.__enter__()
        try:
            self.browser = Browser(page_path="/app/enhance.html", mounts=app_mounts(bundle)).__enter__()
            self.browser.page.wait_for_function("() => window.enhancer !== undefined", timeout=60000)
            result = self.browser.page.evaluate("(o) => window.enhancer.init(o)", {
                "bundle": "/model/", "outWidth": self.size[0], "outHeight": self.size[1], "corners": self.corners})
            self._check(result)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if getattr(self, "browser", None):
                self.browser.__exit__(*exc)
        finally:
            self._bundle.__exit__(*exc)

    def _check(self, result):
        if "error" in result:
            raise WebcnnError(f"in the browser: {result['error']['message']}")
        if self.browser.errors:
            raise WebcnnError("the page reported errors: " + "; ".join(self.browser.errors[:3]))

    def process(self, frame_rgb, rate=1.0) -> np.ndarray:
        """One RGB frame in; the board memory after it, as an RGB uint8 array of the output size."""
        ok, png = cv2.imencode(".png", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        assert ok
        result = self.browser.page.evaluate("([b, o]) => window.enhancer.process(b, o)",
                                            [base64.b64encode(png.tobytes()).decode(), {"rate": rate}])
        self._check(result)
        data = base64.b64decode(result["png"].split(",", 1)[1])
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_image(path):
    """RGB uint8, EXIF orientation applied. A truncated file is an error: OpenCV would fill the missing rows with
    grey and only warn, and that grey would come out as a board."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            frames = getattr(image, "n_frames", 1)
    except Image.DecompressionBombError as e:
        raise WebcnnError(f"{path} is too large to decode safely ({e}); scale it down first") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise WebcnnError(f"cannot read {path} as an image ({e}; corrupt, truncated or not really "
                          f"{Path(path).suffix}); give a complete PNG or JPEG file") from None
    if frames > 1:
        raise WebcnnError(f"{path} is an animation of {frames} frames; give a single image, or a video file")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)   # 16-bit and CMYK files come out as 8-bit BGR
    if bgr is None:   # formats OpenCV lacks (GIF)
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_video(path):
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own complaints; our error says it once
    capture = cv2.VideoCapture(str(path))
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        raise WebcnnError(f"cannot read {path} as a video (corrupt, empty or an unsupported codec); "
                          "give an mp4, webm, avi or y4m file that a video player can open")
    return capture, cv2.cvtColor(first, cv2.COLOR_BGR2RGB)


def check_paths(input_path, output_path):
    src, dst = Path(input_path), Path(output_path)
    if not src.is_file():
        raise WebcnnError(f"input {src} does not exist")
    kind = "image" if src.suffix.lower() in IMAGE_TYPES else "video" if src.suffix.lower() in VIDEO_TYPES else None
    if kind is None:
        raise WebcnnError(f"unsupported input type {src.suffix or '(no extension)'!r} for {src.name}; give an image "
                          f"({', '.join(IMAGE_TYPES)}) or a video ({', '.join(VIDEO_TYPES)})")
    out = dst.suffix.lower()
    allowed = (".png",) if kind == "image" else (".png",) + tuple(VIDEO_CODECS)
    if out not in allowed:
        raise WebcnnError(f"cannot write {kind} output {dst.name}: use {' or '.join(allowed)}"
                          + (" (a .png output keeps the final clean board)" if kind == "video" else ""))
    if not dst.parent.exists():
        raise WebcnnError(f"output folder {dst.parent} does not exist")
    return kind


@contextlib.contextmanager
def quiet_stderr():
    """Silence native libraries' stderr (file descriptor 2) for a moment."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def write_png(path, rgb):
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise WebcnnError(f"could not write {path}")


def enhance_file(input_path, output_path, corners=None, size=None, model_path=MODEL_PATH, progress=True, echo=print):
    """Run INPUT through the pipeline into OUTPUT; returns the number of frames processed."""
    from tqdm import tqdm

    kind = check_paths(input_path, output_path)
    if kind == "image":
        frame = read_image(input_path)
        capture = None
    else:
        capture, frame = open_video(input_path)
    height, width = frame.shape[:2]
    norm_corners = parse_corners(corners, width, height) if corners else None
    out_w, out_h = output_size(width, height, norm_corners, size)
    writer = None
    frames = 0
    try:
        with Enhancer(out_w, out_h, norm_corners, model_path) as enhancer:
            if kind == "image":
                write_png(output_path, enhancer.process(frame, rate=1.0))
                return 1
            fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            to_png = Path(output_path).suffix.lower() == ".png"
            if not to_png:
                codec = VIDEO_CODECS[Path(output_path).suffix.lower()]
                with quiet_stderr():  # OpenCV warns about the webm codec tag it then uses anyway
                    writer = cv2.VideoWriter(str(output_path), cv2.VideoWriter_fourcc(*codec), fps, (out_w, out_h))
                if not writer.isOpened():
                    raise WebcnnError(f"OpenCV cannot write {Path(output_path).suffix} video here; use .mp4 or .avi")
            bar = tqdm(total=total if total and total > 0 else None, unit="frame", disable=not progress,
                       desc=Path(input_path).name)
            board = None
            while frame is not None:
                board = enhancer.process(frame)
                if writer is not None:
                    writer.write(cv2.cvtColor(board, cv2.COLOR_RGB2BGR))
                frames += 1
                bar.update(1)
                ok, bgr = capture.read()
                frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None
            bar.close()
            if to_png:
                write_png(output_path, board)
            return frames
    finally:
        if capture is not None:
            capture.release()
        if writer is not None:
            writer.release()
        if frames == 0 and kind == "video" and os.path.exists(output_path) and Path(output_path).suffix != ".png":
            os.remove(output_path)
