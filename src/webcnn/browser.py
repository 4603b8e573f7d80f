"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, with real WebGL2 through SwiftShader."""
from __future__ import annotations

import base64
import os
import shutil
import tempfile

import numpy as np

from .errors import WebcnnError
from .serve import Server

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--no-sandbox",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
]


def find_chromium() -> str:
    path = os.environ.get("WEBCNN_CHROMIUM")
    for candidate in ([path] if path else []) + list(CHROMIUM_CANDIDATES):
        if candidate and os.path.exists(candidate):
            return candidate
    raise WebcnnError("Chromium was not found at /usr/bin/chromium; install it with `sudo apt-get install chromium` "
                      "(or run the README's setup command), or set WEBCNN_CHROMIUM to its path")


def _decode(entry) -> np.ndarray:
    data = np.frombuffer(base64.b64decode(entry["data"]), dtype=np.float32)
    return data.reshape(entry["shape"])


class _SharedPlaywright:
    """Playwright's sync API allows one driver per thread, so every Browser in a process shares one, counted."""

    def __init__(self):
        self.driver = None
        self.users = 0

    def acquire(self):
        if self.driver is None:
            from playwright.sync_api import sync_playwright

            self.driver = sync_playwright().start()
        self.users += 1
        return self.driver

    def release(self):
        self.users -= 1
        if self.users == 0:
            driver, self.driver = self.driver, None
            driver.stop()


_PLAYWRIGHT = _SharedPlaywright()


def chromium_pids(profile: str, kind: str) -> list[int]:
    """The Chromium processes of one --type (gpu-process, renderer) of the browser using `profile`."""
    def cmdline(pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read().decode(errors="replace").split("\0")
        except OSError:
            return []

    pids = []
    for p in os.listdir("/proc"):
        args = " ".join(cmdline(p)) + " " if p.isdigit() else ""   # Chromium rewrites argv as one string
        if f"--type={kind} " in args and f"--user-data-dir={profile} " in args:
            pids.append(int(p))
    return pids


def gpu_process_pid(profile: str) -> int:
    """The Chromium GPU process (where SwiftShader runs) of the browser using `profile`."""
    pids = chromium_pids(profile, "gpu-process")
    if not pids:
        raise WebcnnError("cannot find Chromium's GPU process to measure")
    return pids[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, threads that have exited included (clock ticks, 10 ms)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Browser:
    """One Chromium with one page on the harness; bundles are mounted on the built-in server."""

    def __init__(self, extra_args=(), page_path="/runtime/harness.html", mounts=None):
        self.extra_args = list(extra_args)
        self.page_path = page_path
        self.mounts = mounts or {}
        self.errors: list[str] = []
        self._count = 0

    def __enter__(self) -> "Browser":
        self.server = Server(self.mounts).start()
        self.profile = tempfile.mkdtemp(prefix="webcnn-chromium-")
        self._pw = _PLAYWRIGHT.acquire()
        try:
            self.context = self._pw.chromium.launch_persistent_context(
                self.profile, executable_path=find_chromium(), headless=True,
                args=CHROMIUM_ARGS + self.extra_args, viewport={"width": 800, "height": 600})
        except Exception as e:
            _PLAYWRIGHT.release()
            self.server.stop()
            raise WebcnnError(f"could not start Chromium: {str(e).splitlines()[0]}") from None
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.open(self.page_path)
        return self

    def open(self, path: str) -> None:
        self.page.goto(self.server.url + path)
        self.page.wait_for_function("() => window.harness !== undefined || document.readyState === 'complete'")

    def __exit__(self, *exc):
        try:
            self.context.close()
        finally:
            _PLAYWRIGHT.release()
            self.server.stop()
            shutil.rmtree(self.profile, ignore_errors=True)

    def mount(self, directory) -> str:
        self._count += 1
        return self.server.mount(f"m{self._count}", directory)

    def load(self, bundle_dir, **options) -> str:
        """Load a bundle into the page; returns a model id."""
        url = self.mount(bundle_dir)
        model_id = f"model{self._count}"
        result = self.page.evaluate("([id, url, o]) => window.harness.load(id, url, o)", [model_id, url, options])
        self._raise(result)
        self.last_load = result
        return model_id

    def run(self, model_id: str, inputs: dict, mode: str = "throughput", debug=False, timeout_ms=300000):
        encoded = {k: base64.b64encode(np.ascontiguousarray(v, dtype=np.float32).tobytes()).decode()
                   for k, v in inputs.items()}
        result = self.page.evaluate("([id, x, o]) => window.harness.run(id, x, o)",
                                    [model_id, encoded, {"mode": mode, "debug": debug, "timeoutMs": timeout_ms}])
        self._raise(result)
        outputs = {k: _decode(v) for k, v in result["outputs"].items()}
        debug_out = {k: _decode(v) for k, v in result.get("debug", {}).items()}
        return outputs, debug_out, result["stats"]

    def dispose(self, model_id: str) -> None:
        self.page.evaluate("(id) => window.harness.dispose(id)", model_id)

    def _raise(self, result):
        if "error" in result:
            err = result["error"]
            raise WebcnnError(f"in the browser: {err['message']}" + (f" [{err['code']}]" if err.get("code") else ""))
        if self.errors:
            errors, self.errors = self.errors, []
            raise WebcnnError("the page reported errors: " + "; ".join(errors[:5]))

    def run_bundle(self, bundle_dir, inputs: dict, **kw):
        model_id = self.load(bundle_dir)
        try:
            return self.run(model_id, inputs, **kw)
        finally:
            self.dispose(model_id)
