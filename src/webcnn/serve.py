"""A small static server on 127.0.0.1 for the runtime, bundles and demos. It refuses paths outside its roots."""
from __future__ import annotations

import errno
import mimetypes
import os
import threading
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .errors import WebcnnError

RUNTIME_DIR = Path(__file__).parent / "runtime"
# Strict: no inline script, no eval. The runtime and the apps must work under it.
CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; object-src 'none'; base-uri 'none'"


class Server:
    """Serve a set of mount points: URL prefix -> directory."""

    def __init__(self, mounts: dict[str, os.PathLike] | None = None, host: str = "127.0.0.1", port: int = 0):
        self.mounts = {"runtime": RUNTIME_DIR}
        self.mounts.update({k.strip("/"): Path(v) for k, v in (mounts or {}).items()})
        self.lock = threading.Lock()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def end_headers(self):
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Security-Policy", CSP)
                self.send_header("Cross-Origin-Opener-Policy", "same-origin")
                super().end_headers()

            def translate_path(self, path):
                return server.resolve(path)

            def guess_type(self, path):
                if str(path).endswith((".js", ".mjs")):
                    return "text/javascript"
                return mimetypes.guess_type(str(path))[0] or "application/octet-stream"

            def list_directory(self, path):
                self.send_error(404, "not found")
                return None

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise WebcnnError(f"port {port} is already in use; pick another with --port") from None
            raise WebcnnError(f"cannot listen on {host}:{port}: {e.strerror}") from None
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def resolve(self, url_path: str) -> str:
        """Map a URL path into a mount; anything escaping its mount maps to a path that does not exist."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path)
        head, _, rest = path.lstrip("/").partition("/")
        with self.lock:
            root = self.mounts.get(head)
        if root is None:
            return "/nonexistent"
        root = root.resolve()
        target = (root / rest).resolve()
        if target != root and root not in target.parents:
            return "/nonexistent"
        return str(target)

    def mount(self, prefix: str, directory) -> str:
        with self.lock:
            self.mounts[prefix.strip("/")] = Path(directory)
        return f"{self.url}/{prefix.strip('/')}/"

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "Server":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
