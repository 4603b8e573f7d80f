"""The live whiteboard web app: compile the model to a webcnn bundle and serve the page on 127.0.0.1.

  whiteboard serve --port 8000     # then open http://127.0.0.1:8000/app/
"""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path

from webcnn.errors import WebcnnError
from webcnn.serve import Server

WEB_DIR = Path(__file__).parent / "web"
MODEL_PATH = Path(__file__).parent / "assets" / "whiteboard.onnx"
# Small tiles: on a slow (software) GPU one 8 MFLOP draw alone overruns a 60 Hz frame. Adjacent tiles merge
# into one draw whenever the budget allows, so a fast GPU loses little.
TILE_FLOPS = 1e6


@contextlib.contextmanager
def model_bundle(model_path=MODEL_PATH):
    """Compile the ONNX model into a temporary bundle directory (it takes well under a second)."""
    import webcnn

    model_path = Path(model_path)
    if not model_path.is_file():
        raise WebcnnError(f"model {model_path} not found; reinstall the package or pass --model PATH.onnx")
    with tempfile.TemporaryDirectory(prefix="whiteboard-bundle-") as tmp:
        bundle = webcnn.compile(str(model_path), max_tile_flops=TILE_FLOPS, out_dir=tmp)
        check_interface(model_path, bundle.manifest)
        yield Path(tmp)


def check_interface(model_path, manifest) -> None:
    """The pages write RGB into the model's only input and read class probabilities from an output named `probs`."""
    inputs, outputs = manifest["inputs"], {t["name"]: t for t in manifest["outputs"]}
    probs = outputs.get("probs")
    fits = (len(inputs) == 1 and len(inputs[0]["shape"]) == 4 and inputs[0]["shape"][:2] == [1, 3]
            and probs is not None and probs["shape"][:2] == [1, 3] and len(probs["shape"]) == 4)
    if not fits:
        have = ", ".join(f"{t['name']} {t['shape']}" for t in inputs)
        made = ", ".join(f"{name} {t['shape']}" for name, t in outputs.items())
        raise WebcnnError(f"{model_path} is not a whiteboard segmentation model: the app needs one input [1, 3, H, W] "
                          f"(RGB in [0, 1]) and an output named 'probs' [1, 3, H, W] (board, ink, foreground); this "
                          f"model takes {have} and gives {made}. Export one with `whiteboard train --export_from`.")


def app_mounts(bundle_dir) -> dict:
    """The app's pages under /app/ and the bundle under /model/ (the server adds the webcnn runtime under /runtime/)."""
    return {"app": WEB_DIR, "model": bundle_dir}


def app_server(bundle_dir, port=0) -> Server:
    """The app's pages, the webcnn runtime and the bundle; nothing else."""
    return Server(app_mounts(bundle_dir), port=port)


def _interrupt(*_):
    raise KeyboardInterrupt


def serve(port=8000, model_path=MODEL_PATH, echo=print) -> None:
    with model_bundle(model_path) as bundle:
        server = app_server(bundle, port)
        echo(f"whiteboard live: open {server.url}/app/ in a browser (Ctrl-C stops)")
        signal.signal(signal.SIGTERM, _interrupt)  # so that a terminated server still removes its bundle
        try:
            server.httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.httpd.server_close()


if __name__ == "__main__":
    serve(int(os.environ.get("PORT", "8000")))
