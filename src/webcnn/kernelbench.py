"""`webcnn kernels`: GPU time of single convolution layers, webcnn against TF.js WebGL on the same shape in the same
headless Chromium, as effective GFLOP/s; and `--profile MODEL`: the time of every pass of one bundle.

Time is the CPU time of Chromium's GPU process (SwiftShader's work) per run, read from /proc around K back-to-back
runs closed by one synchronous 1-texel readPixels: on a shared 2-core machine wall time varies 2-3x between runs,
CPU time barely. GFLOP/s = the layer's FLOPs / that time.

    webcnn kernels                                   # the layer table (TF.js from scripts/bench-setup.sh)
    webcnn kernels --phases 1,4,8                    # what the phased kernels bought, layer by layer
    webcnn kernels --systems webcnn                  # webcnn only, no peers needed
    webcnn kernels --profile src/whiteboard/assets/whiteboard.onnx
    webcnn kernels --profile MODEL.onnx --against HEAD~3   # what the compiler changes since HEAD~3 bought
"""
from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from .browser import cpu_seconds, gpu_process_pid
from .errors import WebcnnError


@dataclass
class Layer:
    kind: str       # the row label: what kind of convolution
    where: str      # where such a layer occurs
    cin: int
    cout: int
    size: tuple     # input H, W
    k: int = 3
    stride: int = 1
    groups: int = 1
    transposed: bool = False

    @property
    def name(self) -> str:
        return f"{self.kind} {self.cin}->{self.cout} @{self.size[0]}x{self.size[1]}"

    def module(self):
        import torch

        pad = 0 if self.transposed else self.k // 2
        conv = (torch.nn.ConvTranspose2d(self.cin, self.cout, self.k, self.stride, groups=self.groups)
                if self.transposed else
                torch.nn.Conv2d(self.cin, self.cout, self.k, self.stride, pad, groups=self.groups))
        # A 2x2 max pool after the conv (in both systems): a network's inner layer, not its output, whose texture
        # layout webcnn is free to choose. It costs about one texture fetch per conv output texel.
        layers = [conv] if self.transposed else [conv, torch.nn.ReLU()]
        return torch.nn.Sequential(*layers, torch.nn.MaxPool2d(2))


LAYERS = [
    Layer("3x3", "U-Net encoder 32 ch at 1/4 of 360x640", 32, 32, (90, 160)),
    Layer("3x3", "ResNet-18 stage 2", 128, 128, (28, 28)),
    Layer("1x1", "MobileNetV2 expand", 24, 144, (56, 56), k=1),
    Layer("1x1", "MobileNetV2 project", 576, 96, (14, 14), k=1),
    Layer("1x1", "whiteboard pointwise 80 ch at 1/8", 80, 80, (45, 80), k=1),
    Layer("depthwise 3x3", "MobileNetV2 block 2", 144, 144, (56, 56), groups=144),
    Layer("depthwise 3x3", "whiteboard 80 ch at 1/8", 80, 80, (45, 80), groups=80),
    Layer("strided 3x3 s2", "MobileNetV2 stem", 3, 32, (224, 224), stride=2),
    Layer("strided depthwise s2", "MobileNetV2 block 3", 144, 144, (56, 56), stride=2, groups=144),
    Layer("transposed 2x2 s2", "U-Net decoder at 1/8 of 360x640", 128, 128, (45, 80), k=2, stride=2, transposed=True),
]


def layer_flops(layer: Layer) -> float:
    h, w = layer.size
    if layer.transposed:   # every input pixel meets every tap once
        return 2.0 * layer.cin * layer.cout // layer.groups * layer.k * layer.k * h * w
    oh, ow = (h + layer.stride - 1) // layer.stride, (w + layer.stride - 1) // layer.stride
    return 2.0 * layer.cout * (layer.cin // layer.groups) * layer.k * layer.k * oh * ow


def _prepare_layer(layer: Layer, d: Path, variants: dict, tfjs: bool) -> None:
    import torch

    from . import zoo
    from .bench import tfjs_graph
    from .compiler import compile as compile_model

    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    shape = (1, layer.cin, *layer.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo.export(layer.module().eval(), shape, str(d / "model.onnx"))
    for label, options in variants.items():
        compile_model(str(d / "model.onnx"), input_shapes={"input": shape}, out_dir=str(d / label), **options)
    if tfjs:
        tfjs_graph(d / "model.onnx", d / "tfjs")


class GpuTimer:
    """Time prepared runners by the GPU process's CPU time: SwiftShader's work, unaffected by other load on the
    machine (wall time on a shared 2-core machine varies 2-3x between runs)."""

    def __init__(self, browser):
        self.b = browser
        self.pid = gpu_process_pid(browser.profile)

    def prepare(self, rid: str, kind: str, url: str, precision="fp32") -> None:
        r = self.b.page.evaluate("(c) => window.kernels.prepare(c)",
                                 {"id": rid, "kind": kind, "url": url, "precision": precision})
        if r.get("error"):
            raise WebcnnError(f"kernel bench: {rid}: {r['error']}")

    def measure(self, rid: str, min_cpu_s: float = 0.3) -> dict:
        k = 1
        while True:
            self.pid = gpu_process_pid(self.b.profile)   # Chromium may have restarted it
            c0 = cpu_seconds(self.pid)
            wall = self.b.page.evaluate("(c) => window.kernels.repeat(c)", {"id": rid, "k": k})
            cpu = cpu_seconds(self.pid) - c0
            if (cpu >= min_cpu_s or k >= 1024) and cpu > 0:
                return {"cpu_ms": cpu * 1e3 / k, "wall_ms": wall / k}
            if k >= 4096:
                raise WebcnnError(f"kernel bench: no GPU-process CPU time measured for {rid}")
            k = min(4096, max(2 * k, int(k * min_cpu_s / max(cpu, 1e-3)) + 1))

    def release(self, rid: str) -> None:
        self.b.page.evaluate("(c) => window.kernels.release(c)", {"id": rid})


def _browser(work: Path):
    from .bench import PEERS_DIR, _relax_peer_csp
    from .browser import Browser
    from .serve import RUNTIME_DIR

    mounts = {"work": work, "bench-peer": RUNTIME_DIR}
    if PEERS_DIR.exists():
        mounts["peers"] = PEERS_DIR
    b = Browser(page_path="/bench-peer/kernels.html", mounts=mounts)
    b.__enter__()
    _relax_peer_csp(b.server)
    b.page.goto(b.server.url + "/bench-peer/kernels.html")
    b.page.wait_for_function("() => window.kernels !== undefined")
    return b


def run_kernels(variants=None, tfjs=True, layers=LAYERS, precision="fp32", rounds=3, echo=print) -> list[dict]:
    """Each layer compiled with each variant ({label: compile options}; default: webcnn as shipped), plus TF.js."""
    from .bench import PEERS_DIR

    variants = {"webcnn": {}} if variants is None else variants
    if tfjs and not PEERS_DIR.exists():
        raise WebcnnError(f"TF.js is missing ({PEERS_DIR}); run scripts/bench-setup.sh first, or pass "
                          "--systems webcnn")
    systems = list(variants) + (["tfjs-webgl"] if tfjs else [])
    rows = []
    with tempfile.TemporaryDirectory(prefix="webcnn-kernels-") as tmp:
        work = Path(tmp)
        for i, layer in enumerate(layers):
            _prepare_layer(layer, work / f"l{i}", variants, tfjs)
        b = _browser(work)
        timer = GpuTimer(b)
        echo(format_header(systems))
        try:
            for i, layer in enumerate(layers):
                for label in variants:
                    timer.prepare(f"{i}/{label}", "webcnn", f"/work/l{i}/{label}/", precision)
                if tfjs:
                    timer.prepare(f"{i}/tfjs-webgl", "tfjs", f"/work/l{i}/tfjs/")
                best = {}
                for _ in range(rounds):
                    for s in systems:
                        t = timer.measure(f"{i}/{s}")
                        if s not in best or t["cpu_ms"] < best[s]["cpu_ms"]:
                            best[s] = t
                for s in systems:
                    timer.release(f"{i}/{s}")
                flops = layer_flops(layer)
                row = {"layer": layer.name, "kind": layer.kind, "where": layer.where, "mflop": flops / 1e6}
                for s in systems:
                    row[s] = {"ms": best[s]["cpu_ms"], "wall_ms": best[s]["wall_ms"],
                              "gflops": flops / 1e9 / (best[s]["cpu_ms"] / 1e3)}
                rows.append(row)
                echo(format_row(row, systems))
        finally:
            b.__exit__(None, None, None)
    return rows


def format_header(systems) -> str:
    cols = " | ".join(f"{s} ms (GFLOP/s)" for s in systems)
    ratio = f" | TF.js time / {systems[-2]}'s" if "tfjs-webgl" in systems and len(systems) > 1 else ""
    n = 3 + len(systems) + (1 if ratio else 0)
    return f"| layer | where | MFLOP | {cols}{ratio} |\n|" + "---|" * n


def format_row(row, systems) -> str:
    cells = " | ".join(f"{row[s]['ms']:.2f} ({row[s]['gflops']:.2f})" for s in systems)
    ratio = ""
    if "tfjs-webgl" in systems and len(systems) > 1:
        ratio = f" | {row['tfjs-webgl']['ms'] / row[systems[-2]]['ms']:.2f}x"
    return f"| {row['layer']} | {row['where']} | {row['mflop']:.1f} | {cells}{ratio} |"


def profile(model, input_shapes=None, precision="fp32", top=25, echo=print, **compile_options) -> list:
    """Time every pass of MODEL's bundle on its own (GPU-process CPU time); print the most expensive passes and
    the totals per op kind."""
    from .compiler import compile as compile_model

    with tempfile.TemporaryDirectory(prefix="webcnn-profile-") as tmp:
        work = Path(tmp)
        bundle = compile_model(model, input_shapes=input_shapes, out_dir=str(work / "b"), **compile_options)
        b = _browser(work)
        try:
            timer = GpuTimer(b)
            timer.prepare("m", "webcnn", "/work/b/", precision)
            whole = timer.measure("m", min_cpu_s=1.0)
            rows = []
            for p, pass_ in enumerate(bundle.manifest["passes"]):
                t = timer.measure(f"m#{p}", min_cpu_s=0.1)
                rows.append({"node": pass_["node"], "op": pass_["op"], "flops": pass_["flops"],
                             "draws": len(pass_["tiles"]), "ms": t["cpu_ms"]})
        finally:
            b.__exit__(None, None, None)
    passes_sum = sum(x["ms"] for x in rows)
    echo(f"whole run {whole['cpu_ms']:.1f} ms GPU-process CPU ({whole['wall_ms']:.1f} ms wall); sum of passes "
         f"timed alone {passes_sum:.1f} ms; {len(rows)} passes")
    by_op: dict = {}
    for x in rows:
        o = by_op.setdefault(x["op"], {"ms": 0.0, "flops": 0, "n": 0})
        o["ms"] += x["ms"]
        o["flops"] += x["flops"]
        o["n"] += 1
    echo(f"{'op':<24} {'passes':>6} {'ms':>9} {'share':>6} {'GFLOP/s':>8}")
    for op, o in sorted(by_op.items(), key=lambda kv: -kv[1]["ms"]):
        echo(f"{op:<24} {o['n']:>6} {o['ms']:>9.2f} {o['ms'] / passes_sum:>6.1%} "
             f"{o['flops'] / 1e9 / max(o['ms'] / 1e3, 1e-9):>8.2f}")
    echo(f"\n{'node':<48} {'op':<20} {'MFLOP':>8} {'draws':>5} {'ms':>8} {'GFLOP/s':>8}")
    for x in sorted(rows, key=lambda x: -x["ms"])[:top]:
        echo(f"{x['node'][-48:]:<48} {x['op']:<20} {x['flops'] / 1e6:>8.1f} {x['draws']:>5} {x['ms']:>8.2f} "
             f"{x['flops'] / 1e9 / max(x['ms'] / 1e3, 1e-9):>8.2f}")
    return rows


def against(model, rev: str, input_shapes=None, rounds=5, precision="fp32", echo=print) -> dict:
    """MODEL compiled by git revision REV of this repository and by this tree, timed in alternation in one browser
    (whole run, GPU-process CPU): what a compiler change bought, with the machine's drift shared by both."""
    from .compiler import compile as compile_model

    repo = Path(__file__).resolve().parents[2]
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "src"], capture_output=True)
    if archive.returncode:
        raise WebcnnError(f"cannot export revision {rev!r} of {repo}: {archive.stderr.decode().strip()[:200]}; "
                          "pass a commit of this repository (and run from a git checkout)")
    runs: dict = {rev: [], "this tree": []}
    with tempfile.TemporaryDirectory(prefix="webcnn-against-") as tmp:
        work = Path(tmp)
        tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(work / "rev")
        shapes = {k: list(v) for k, v in (input_shapes or {}).items()}
        script = ("import json, sys; from webcnn.compiler import compile; "
                  "compile(sys.argv[1], input_shapes=json.loads(sys.argv[2]) or None, out_dir=sys.argv[3])")
        old = subprocess.run([sys.executable, "-c", script, str(model), json.dumps(shapes), str(work / "b0")],
                             capture_output=True, env={**os.environ, "PYTHONPATH": str(work / "rev" / "src")})
        if old.returncode:
            raise WebcnnError(f"revision {rev} cannot compile {model}: {old.stderr.decode().strip()[-300:]}")
        compile_model(model, input_shapes=input_shapes, out_dir=str(work / "b1"))
        b = _browser(work)
        try:
            timer = GpuTimer(b)
            for i, label in enumerate(runs):
                timer.prepare(label, "webcnn", f"/work/b{i}/", precision)
            for _ in range(rounds):
                for label in runs:
                    runs[label].append(timer.measure(label, min_cpu_s=1.0)["cpu_ms"])
        finally:
            b.__exit__(None, None, None)
    for label, ms in runs.items():
        echo(f"{label:<12} GPU-process CPU per run: median {statistics.median(ms):7.1f} ms, best {min(ms):7.1f} "
             f"({', '.join(f'{m:.1f}' for m in ms)})")
    ratio = statistics.median(runs["this tree"]) / statistics.median(runs[rev])
    echo(f"this tree / {rev}: {ratio:.3f} (median of {rounds} alternating rounds)")
    return runs
