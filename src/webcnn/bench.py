"""`webcnn bench`: page responsiveness and speed of webcnn against TF.js WebGL and ONNX Runtime Web, side by side in
one headless Chromium run (issue 3).

Every system runs on the same page (runtime/bench.html), each time in a fresh tab: a visible WebGL canvas animating
at display rate, a probe draw + fence each frame, a long-task observer, and one system inferring continuously for a
fixed window.

    scripts/bench-setup.sh                                  # peers from npm, pinned, into bench/peers/ (git-ignored)
    webcnn bench --network all                              # MobileNetV2 224 + the whiteboard U-Net 360x640
    webcnn bench --network unet --seconds 20                # the zoo's heavy U-Net at 360x640
    webcnn bench --systems idle,webcnn,webcnn-throughput    # no peers needed

Every window lasts --seconds and at least --min-inferences inferences (at most --max-seconds). ort-native is
onnxruntime's CPU provider in this Python process on the same input: the speed this machine's CPU can reach, which is
what SwiftShader's WebGL runs on here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .browser import chromium_pids, cpu_seconds
from .errors import WebcnnError

PEERS_DIR = Path(__file__).resolve().parents[2] / "bench" / "peers" / "node_modules"
NETWORKS = {"mobilenetv2": (1, 3, 224, 224), "whiteboard": (1, 3, 360, 640), "unet": (1, 3, 360, 640)}
ALL_NETWORKS = ["mobilenetv2", "whiteboard"]   # the pair: MobileNetV2 224 and the whiteboard U-Net 360x640
# The whiteboard app's own segmentation U-Net (trained weights, 1.4 GFLOP); the zoo's "unet" is a much heavier one.
WHITEBOARD_ONNX = Path(__file__).resolve().parents[1] / "whiteboard" / "assets" / "whiteboard.onnx"
# ort-webgpu goes last (and runs once, after every round): on SwiftShader's WebGPU a run can outlast its window.
SYSTEMS = ["idle", "webcnn", "webcnn-throughput", "tfjs-webgl", "ort-wasm", "ort-wasm-proxy", "ort-native", "ort-webgpu"]
PEER_SYSTEMS = {"tfjs-webgl", "ort-wasm", "ort-wasm-proxy", "ort-webgpu"}
# Peers are served under their own CSP: ONNX Runtime Web compiles WebAssembly ('wasm-unsafe-eval') and its proxy
# starts a worker. webcnn's pages keep the strict CSP of serve.py.
PEER_CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; style-src 'self'; "
            "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'")
FRAME_OVER_MS = 50.0


def bench_input(shape) -> np.ndarray:
    """The deterministic input every system gets; bench.js computes the same values."""
    i = np.arange(int(np.prod(shape)), dtype=np.float64)
    return np.sin(i * 0.37).astype(np.float32).reshape(shape)


# --- the same network for TF.js: a layer-by-layer graph over the ONNX initializers, weights in TF layouts ---

def _attrs(node):
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def tfjs_graph(onnx_path, out_dir: Path) -> None:
    """Write graph.json + weights.bin: ONNX nodes mapped to tf ops (NHWC), conv+relu/relu6 fused as tfjs-converter does."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            inits[n.output[0]] = numpy_helper.to_array(_attrs(n)["value"])
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(g.value_info) + list(g.output) + list(g.input)}
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    weights, blobs, offset = [], [], 0

    def weight(name, array):
        nonlocal offset
        array = np.ascontiguousarray(array, dtype=np.float32)
        weights.append({"name": name, "shape": list(array.shape), "offset": offset})
        blobs.append(array.tobytes())
        offset += array.nbytes
        return name

    nodes, skip, alias = [], set(), {}
    by_input = {}
    for n in g.node:
        for i in n.input:
            by_input.setdefault(i, []).append(n)
    for n in g.node:
        if n.op_type == "Constant" or id(n) in skip:
            continue
        a, op = _attrs(n), n.op_type
        ins = [alias.get(i, i) for i in n.input]
        out = n.output[0]
        node = {"op": op, "inputs": [ins[0]], "output": out}
        if op in ("Conv", "ConvTranspose"):
            w = inits[n.input[1]]
            pads = a.get("pads", [0, 0, 0, 0])
            node.update(strides=a.get("strides", [1, 1]), dilations=a.get("dilations", [1, 1]),
                        pad=pads[0] if len(set(pads)) == 1 else [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]])
            group = a.get("group", 1)
            if op == "ConvTranspose":
                node["filter"] = weight(n.input[1], w.transpose(2, 3, 1, 0))   # (Cin,Cout,kh,kw) -> (kh,kw,Cout,Cin)
                node["outShape"] = [1] + [shapes[out][2], shapes[out][3], shapes[out][1]]
            elif group == 1:
                node["filter"] = weight(n.input[1], w.transpose(2, 3, 1, 0))   # OIHW -> HWIO
            elif group == w.shape[0] and w.shape[1] == 1:
                node["op"] = "DepthwiseConv"
                node["filter"] = weight(n.input[1], w.transpose(2, 3, 0, 1))   # (C,1,kh,kw) -> (kh,kw,C,1)
            else:
                raise WebcnnError(f"bench: grouped Conv {n.name} (group={group}) has no TF.js mapping here")
            if len(n.input) > 2:
                node["bias"] = weight(n.input[2], inits[n.input[2]])
            follow = by_input.get(out, [])
            if op != "ConvTranspose" and consumers.get(out) == 1 and follow and follow[0].op_type in ("Relu", "Clip"):
                f = follow[0]
                lo, hi = ((inits[f.input[1]].item(), inits[f.input[2]].item()) if f.op_type == "Clip" else (0, None))
                if f.op_type == "Relu" or (lo == 0 and hi == 6):
                    node["activation"] = "relu" if f.op_type == "Relu" else "relu6"
                    node["output"] = f.output[0]
                    skip.add(id(f))
        elif op == "Clip":
            node.update(min=float(inits[n.input[1]]), max=float(inits[n.input[2]]))
        elif op in ("Add", "Concat"):
            node["inputs"] = ins
            if op == "Concat" and a["axis"] != 1:
                raise WebcnnError("bench: only channel Concat is mapped to TF.js")
        elif op == "MaxPool":
            node.update(kernel=a["kernel_shape"], strides=a.get("strides", [1, 1]), pad="valid")
            if any(a.get("pads", [0])):
                raise WebcnnError("bench: padded MaxPool has no TF.js mapping here")
        elif op == "Resize":
            mode = a.get("mode", b"nearest").decode()
            node.update(mode=mode, size=shapes[out][2:4],
                        halfPixel=a.get("coordinate_transformation_mode", b"") in (b"half_pixel", b"pytorch_half_pixel"))
        elif op == "Gemm":
            b = inits[n.input[1]]
            node["filter"] = weight(n.input[1], b.T if a.get("transB", 0) else b)
            if len(n.input) > 2:
                node["bias"] = weight(n.input[2], inits[n.input[2]])
        elif op == "Softmax":
            if a.get("axis", 1) != 1 or len(shapes[out]) != 4:
                raise WebcnnError("bench: only channel Softmax of a 4-D tensor is mapped to TF.js")
        elif op not in ("Relu", "GlobalAveragePool", "Flatten"):
            raise WebcnnError(f"bench: ONNX op {op} ({n.name}) has no TF.js mapping here")
        nodes.append(node)
    graph = {"input": g.input[0].name, "inputShape": shapes[g.input[0].name], "output": g.output[0].name,
             "outputShape": shapes[g.output[0].name], "nodes": nodes, "weights": weights}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "graph.json").write_text(json.dumps(graph))
    (out_dir / "weights.bin").write_bytes(b"".join(blobs))


def prepare(network: str, work: Path, onnx_source: Path | None = None) -> dict:
    """Write the network's ONNX (the zoo's export, or a copy of onnx_source), compile it with webcnn, rebuild it for
    TF.js; return the reference output of onnxruntime on bench_input."""
    import onnx
    import onnxruntime as ort

    from . import zoo
    from .compiler import compile as compile_model

    shape = NETWORKS.get(network)
    d = work / network
    d.mkdir(parents=True, exist_ok=True)
    onnx_path = d / "model.onnx"
    if onnx_source is None and network == "whiteboard":
        onnx_source = WHITEBOARD_ONNX
    if onnx_source is not None:
        proto = onnx.load(str(onnx_source))
        shape = tuple(dim.dim_value for dim in proto.graph.input[0].type.tensor_type.shape.dim)
        onnx.save(proto, str(onnx_path))
    else:
        zoo.export(zoo.build(network), shape, str(onnx_path))
    input_name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
    bundle = compile_model(str(onnx_path), input_shapes={input_name: shape}, out_dir=str(d / "webcnn"))
    tfjs_graph(onnx_path, d / "tfjs")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    reference = session.run(None, {input_name: bench_input(shape)})[0]
    return {"dir": d, "shape": shape, "input": input_name, "onnx": onnx_path, "stats": bundle.stats(),
            "reference": reference}


# --- statistics ---

def _pct(values, q):
    return float(np.percentile(values, q)) if len(values) else None


def _window(raw: dict) -> dict:
    """One window's figures: frame intervals, probes, long tasks and latencies during load and during the run."""
    frames = np.asarray(raw["frames"])
    t_start, t_first, run0, run1 = raw["tStart"], raw["tFirst"], raw["runStart"], raw["runEnd"]

    def intervals(a, b):
        # Include the frame before the window and the gap still open at its end: a frozen page counts as a stall.
        before = frames[frames < a]
        f = np.concatenate([before[-1:], frames[(frames >= a) & (frames <= b)], [b]])
        return np.diff(f)

    lt = raw["longtasks"]
    for row in (raw.get("stats") or {}).get("trace") or []:   # --trace: scheduler slices, in ms since load() began
        for k in ("at", "frame", "done"):
            if k in row:
                row[k] = round(row[k] - t_start, 2)
    return {"run_iv": intervals(run0, run1), "load_iv": intervals(t_start, t_first),
            "probes": [p[1] for p in raw["probes"] if run0 <= p[0] <= run1],
            "lt_load": [d for t, d in lt if t_start <= t < t_first], "lt_run": [d for t, d in lt if run0 <= t <= run1],
            "lat": list(raw["latencies"]), "window_s": (run1 - run0) / 1000, "first_ms": t_first - t_start,
            "cpu": {k: _cores(raw.get("cpuStart"), raw.get("cpuEnd"), k, (run1 - run0) / 1000)
                    for k in ("gpu", "renderer")},
            "trace": {"t": ((frames[1:] - t_start) / 1000).round(4).tolist(), "dt": np.diff(frames).round(3).tolist(),
                      "runStart": (run0 - t_start) / 1000, "firstResult": (t_first - t_start) / 1000,
                      # load progress and long tasks, ms since load() began: where a load's long task came from
                      "loadMarks": [[round(t - t_start, 1), *rest] for t, *rest in raw.get("marks", [])],
                      "longtasks": [[round(t - t_start, 1), round(d, 1)] for t, d in lt if t_start <= t <= run1]}}


def summarise(raws, reference: np.ndarray | None) -> dict:
    """One system's figures over its windows (one per round, pooled); first result and plot trace from round 1."""
    raws = raws if isinstance(raws, list) else [raws]
    failed = next((r for r in raws if "error" in r), None)
    if failed:
        return {"system": failed["system"], "error": failed["error"], "note": failed.get("note")}
    ws = [_window(r) for r in raws]
    pool = {k: np.concatenate([np.asarray(w[k], dtype=float) for w in ws]) for k in
            ("run_iv", "load_iv", "probes", "lt_load", "lt_run", "lat")}
    run_iv, load_iv, probes, lat = pool["run_iv"], pool["load_iv"], pool["probes"], pool["lat"]
    lt_load, lt_run = pool["lt_load"].tolist(), pool["lt_run"].tolist()
    window_s = sum(w["window_s"] for w in ws)
    raw = raws[-1]
    s = {
        "system": raw["system"], "rounds": len(raws),
        "frame_p50_ms": _pct(run_iv, 50), "frame_p99_ms": _pct(run_iv, 99),
        "frame_max_ms": float(run_iv.max()) if len(run_iv) else None,
        "frames_over_50ms": int((run_iv > FRAME_OVER_MS).sum()), "frames": int(len(run_iv)),
        "load_frame_max_ms": float(load_iv.max()) if len(load_iv) else None,
        "load_frames_over_50ms": int((load_iv > FRAME_OVER_MS).sum()),
        "longtasks_load": len(lt_load), "longtask_load_max_ms": max(lt_load, default=0.0),
        "longtasks_run": len(lt_run), "longtask_run_max_ms": max(lt_run, default=0.0),
        "probe_p50_ms": _pct(probes, 50), "probe_p99_ms": _pct(probes, 99),
        "probe_max_ms": float(probes.max()) if len(probes) else None,
        "inferences": int(len(lat)), "latency_p50_ms": _pct(lat, 50), "latency_p90_ms": _pct(lat, 90),
        "latency_p50_by_round_ms": [_pct(np.asarray(w["lat"], dtype=float), 50) for w in ws],
        "throughput_per_s": len(lat) / window_s if window_s > 0 and len(lat) else 0.0,
        "first_result_ms": ws[0]["first_ms"] if raw["system"] != "idle" else None,
        "window_s": window_s, "note": "; ".join(r["note"] for r in raws if r.get("note")) or None,
        "stats": raw.get("stats"),
    }
    for kind in ("gpu", "renderer"):   # cores busy over the windows, weighted by their lengths
        cores = [(w["cpu"][kind], w["window_s"]) for w in ws]
        s[f"{kind}_cores"] = None if any(c is None for c, _ in cores) or window_s <= 0 else \
            sum(c * t for c, t in cores) / window_s
    if reference is not None and raw.get("output") is not None:
        out = np.asarray(raw["output"], dtype=np.float32)
        ref = reference.reshape(-1)[raw["outputStride"] - 1::raw["outputStride"]][:len(out)] \
            if raw.get("outputStride", 1) > 1 else reference.reshape(-1)[:len(out)]
        s["max_abs_err"] = float(np.abs(out - ref).max()) if out.shape == ref.shape else None
    s["trace"] = ws[0]["trace"]
    return s


def speed_ratios(results: list[dict]) -> dict:
    """webcnn throughput mode's latency p50 over each other system's (issue 6: TF.js WebGL, ORT wasm, ORT native)."""
    by = {r["system"]: r for r in results if "error" not in r and r.get("latency_p50_ms")}
    ours = by.get("webcnn-throughput")
    if not ours:
        return {}
    out = {}
    for name in ("tfjs-webgl", "ort-wasm", "ort-wasm-proxy", "ort-webgpu", "ort-native"):
        if name not in by:
            continue
        out[name] = {"latency_ms": by[name]["latency_p50_ms"], "ratio": ours["latency_p50_ms"] / by[name]["latency_p50_ms"]}
        # Round by round (the systems' windows of one round are neighbours in time): how far the machine's drift
        # moves the ratio within one run.
        mine, theirs = ours.get("latency_p50_by_round_ms") or [], by[name].get("latency_p50_by_round_ms") or []
        if len(mine) > 1 and len(mine) == len(theirs) and all(mine) and all(theirs):
            out[name]["ratio_by_round"] = [a / b for a, b in zip(mine, theirs)]
    return out


def ort_native(info: dict, seconds: float, min_inferences: int, max_seconds: float) -> dict:
    """onnxruntime CPU in this process, default threads, on bench_input: same keys as summarise(), no page figures."""
    import time

    import onnxruntime as ort

    t0 = time.perf_counter()
    session = ort.InferenceSession(str(info["onnx"]), providers=["CPUExecutionProvider"])
    feed = {info["input"]: bench_input(info["shape"])}
    out = session.run(None, feed)[0]
    first = (time.perf_counter() - t0) * 1000
    lat, start = [], time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= max_seconds or (elapsed >= seconds and len(lat) >= min_inferences):
            break
        a = time.perf_counter()
        session.run(None, feed)
        lat.append((time.perf_counter() - a) * 1000)
    window = time.perf_counter() - start
    page = dict.fromkeys(["frame_p50_ms", "frame_p99_ms", "frame_max_ms", "frames_over_50ms", "frames",
                          "load_frame_max_ms", "load_frames_over_50ms", "longtasks_load", "longtask_load_max_ms",
                          "longtasks_run", "longtask_run_max_ms", "probe_p50_ms", "probe_p99_ms", "probe_max_ms"])
    return {"system": "ort-native", **page, "inferences": len(lat), "latency_p50_ms": _pct(lat, 50),
            "latency_p90_ms": _pct(lat, 90), "throughput_per_s": len(lat) / window, "first_result_ms": first,
            "window_s": window, "note": None,
            "stats": {"onnxruntime": ort.__version__, "provider": "CPUExecutionProvider", "cpus": os.cpu_count()},
            "max_abs_err": float(np.abs(out - info["reference"]).max())}


def _ms(v):
    """A latency with sensible precision: 1234, 56.7, 0.89."""
    return "-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown(network: str, results: list[dict], info: dict) -> str:
    idle = next((r for r in results if r["system"] == "idle" and "error" not in r), None)
    thr = next((r for r in results if r["system"] == "webcnn-throughput" and "error" not in r), None)
    lines = [f"### {network} {info['shape'][2]}x{info['shape'][3]} ({info['stats']['flops'] / 1e9:.2f} GFLOP), "
             f"windows of {info['seconds']:g} s and {info.get('min_inferences', 1)}+ inferences per system"
             + (f", in {info['rounds']} interleaved rounds" if info.get("rounds", 1) > 1 else ""), "",
             *([f"{info['env']}", ""] if info.get("env") else []),
             "| system | frame p50 / p99 / max ms | p99 vs idle | frames >50 ms | long tasks load (max ms) | "
             "long tasks run (max ms) | probe p50 / p99 ms | inference p50 / p90 ms | inf/s | first result ms | "
             "max abs err | CPU cores: GPU process / page |", "|" + "---|" * 12]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['system']} | {r['error']} |" + " |" * 10)
            continue
        ratio = (r["frame_p99_ms"] / idle["frame_p99_ms"]) if idle and r["frame_p99_ms"] else None
        err = f"{r['max_abs_err']:.1e}" if r.get("max_abs_err") is not None else "-"
        lines.append(
            f"| {r['system']} | {_fmt(r['frame_p50_ms'])} / {_fmt(r['frame_p99_ms'])} / {_fmt(r['frame_max_ms'])} | "
            f"{_fmt(ratio, 2) + 'x' if ratio else '-'} | {_fmt(r['frames_over_50ms'])} / {_fmt(r['frames'])} | "
            f"{_fmt(r['longtasks_load'])} ({_fmt(r['longtask_load_max_ms'], 0)}) | "
            f"{_fmt(r['longtasks_run'])} ({_fmt(r['longtask_run_max_ms'], 0)}) | "
            f"{_fmt(r['probe_p50_ms'])} / {_fmt(r['probe_p99_ms'])} | "
            f"{_ms(r['latency_p50_ms'])} / {_ms(r['latency_p90_ms'])} | {_fmt(r['throughput_per_s'], 2)} | "
            f"{_fmt(r['first_result_ms'], 0)} | {err} | "
            f"{_fmt(r.get('gpu_cores'), 2)} / {_fmt(r.get('renderer_cores'), 2)} |")
    budget = next((r for r in results if r["system"] == "webcnn" and "error" not in r), None)
    if budget and idle:
        ok = lambda c: "met" if c else "MISSED"  # noqa: E731
        p99_ratio = budget["frame_p99_ms"] / idle["frame_p99_ms"] if budget["frame_p99_ms"] else float("inf")
        lines += ["", "Targets for webcnn (budgeted):",
                  f"- frames over 50 ms: {budget['frames_over_50ms']} ({ok(budget['frames_over_50ms'] == 0)})",
                  f"- frame p99 {p99_ratio:.2f}x idle's (<= 1.5x: {ok(p99_ratio <= 1.5)})",
                  f"- long tasks during load {budget['longtasks_load']}, during inference {budget['longtasks_run']} "
                  f"({ok(budget['longtasks_load'] == 0 and budget['longtasks_run'] == 0)})"]
        if thr and thr["throughput_per_s"]:
            share = budget["throughput_per_s"] / thr["throughput_per_s"]
            lines.append(f"- throughput {share:.0%} of throughput mode's (>= 80%: {ok(share >= 0.8)})")
    speed = speed_ratios(results)
    if speed:
        lines += ["", "Speed: webcnn's throughput-mode inference latency (p50) against each system's, same network, "
                  "weights and input, same run (lower is faster):"]
        for name, v in speed.items():
            target = f" (issue 6 target <= 0.33x: {'met' if v['ratio'] <= 1 / 3 else 'MISSED'})" \
                if name == "tfjs-webgl" else ""
            rounds = f" (round by round: {', '.join(f'{r:.2f}x' for r in v['ratio_by_round'])})" \
                if v.get("ratio_by_round") else ""
            lines.append(f"- vs {name} ({_ms(v['latency_ms'])} ms): {v['ratio']:.2f}x{rounds}{target}")
    notes = [f"- {r['system']}: {r['note']}" for r in results if r.get("note")]
    if notes:
        lines += ["", "Notes:"] + notes
    return "\n".join(lines) + "\n"


def plot(network: str, results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5))
    for r in results:
        if "error" in r or "trace" not in r:
            continue
        ax.plot(r["trace"]["t"], r["trace"]["dt"], lw=0.8, label=r["system"])
        ax.axvline(r["trace"]["runStart"], color=ax.lines[-1].get_color(), lw=0.5, ls=":")
    ax.set_yscale("log")
    ax.axhline(FRAME_OVER_MS, color="k", lw=0.6, ls="--")
    ax.set_xlabel("seconds since load started (dotted: first result)")
    ax.set_ylabel("frame interval (ms, log)")
    ax.set_title(f"{network}: frame intervals of a WebGL page while each system infers")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the browser run ---

def _chromium_cpu(profile: str) -> dict:
    """CPU seconds so far of the GPU process (SwiftShader, and the display compositor) and of each renderer."""
    def read(kind):
        out = {}
        for pid in chromium_pids(profile, kind):
            try:
                out[str(pid)] = cpu_seconds(pid)
            except OSError:   # exited meanwhile
                pass
        return out
    return {"gpu": read("gpu-process"), "renderer": read("renderer")}


def _cores(before: dict, after: dict, kind: str, seconds: float) -> float | None:
    """Cores a process kind kept busy between two _chromium_cpu samples (processes alive at both)."""
    if not before or not after or seconds <= 0:
        return None
    common = before[kind].keys() & after[kind].keys()
    return sum(after[kind][p] - before[kind][p] for p in common) / seconds


def _relax_peer_csp(server) -> None:
    """Swap in PEER_CSP for the peer page and the peer libraries only."""
    base = server.httpd.RequestHandlerClass

    class PeerHandler(base):
        def send_header(self, key, value):
            if key == "Content-Security-Policy" and self.path.startswith(("/bench-peer/", "/peers/")):
                value = PEER_CSP
            super().send_header(key, value)

    server.httpd.RequestHandlerClass = PeerHandler


def _fresh_page(b) -> None:
    """Replace the page by a new tab, which Chromium gives its own renderer process: the previous system's heap
    (a major GC of it could land in the next system's load) and GL objects go with the old one."""
    b.page.close()
    b.page = b.context.new_page()
    b.page.on("pageerror", lambda e: b.errors.append(f"page error: {e}"))
    b.page.on("console", lambda m: m.type == "error" and b.errors.append(f"console: {m.text}"))


def _open(b, url: str) -> None:
    """Open a bench page in a fresh tab (once more if the first attempt is stuck)."""
    for attempt in range(2):
        _fresh_page(b)
        try:
            b.page.goto(url, timeout=60000)
            b.page.wait_for_function("() => window.bench !== undefined", timeout=60000)
            return
        except Exception:
            if attempt:
                raise WebcnnError(f"the bench page {url} did not load twice; the browser is stuck") from None


def _open_blank(b) -> None:
    _fresh_page(b)


def run_bench(networks, systems, seconds: float, out_dir, budget_ms: float | None = None, trace: bool = False,
              min_inferences: int = 5, max_seconds: float | None = None, models_dir=None, rounds: int = 1,
              echo=print) -> dict:
    """Run every system on every network in one Chromium; write bench.json, bench.md and a plot per network."""
    from .browser import Browser
    from .serve import RUNTIME_DIR

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(models_dir) if models_dir else out_dir / "models"
    peers = [s for s in systems if s in PEER_SYSTEMS]
    if peers and not PEERS_DIR.exists():
        raise WebcnnError(f"the peer libraries are missing ({PEERS_DIR}); run scripts/bench-setup.sh first, "
                          f"or pass --systems idle,webcnn,webcnn-throughput")
    max_seconds = max_seconds or max(60.0, 4 * seconds)
    report = {"seconds": seconds, "min_inferences": min_inferences, "max_seconds": max_seconds, "rounds": rounds,
              "networks": {}}
    prepared = {}
    networks = list(networks)
    for i, net in enumerate(networks):
        # A path to an .onnx file benches that model under its file name (static input shape, TF.js-mappable ops).
        source = Path(net) if str(net).endswith(".onnx") else None
        if source and not source.is_file():
            raise WebcnnError(f"{source} does not exist; pass a network name ({', '.join(NETWORKS)}) or an .onnx path")
        networks[i] = net = source.stem if source else net
        echo(f"preparing {net} ...")
        prepared[net] = prepare(net, work, source)
    mounts = {"models": work, "bench-peer": RUNTIME_DIR}
    if PEERS_DIR.exists():
        mounts["peers"] = PEERS_DIR
    with Browser(extra_args=["--enable-unsafe-webgpu"], page_path="/runtime/bench.html", mounts=mounts) as b:
        _relax_peer_csp(b.server)
        # The page samples Chromium's CPU use at its window's ends: on this machine the display costs CPU too.
        b.context.expose_function("benchCpu", lambda: _chromium_cpu(b.profile))
        browser_version = b.page.evaluate("() => navigator.userAgent.match(/Chrome\\/([\\d.]+)/)[1]")
        for net in networks:
            info = prepared[net]
            info.update(seconds=seconds, min_inferences=min_inferences, rounds=rounds)
            load_before = os.getloadavg()[0]
            # Rounds interleave the systems (A B C, A B C): a burst of other work on the machine then hits each
            # system alike. Each round gets its share of the window; the figures pool all rounds.
            raws: dict[str, list] = {system: [] for system in systems}
            per = {"seconds": seconds / rounds, "minInferences": -(-min_inferences // rounds),
                   "maxSeconds": max_seconds / rounds}
            for rnd in range(rounds):
                for system in systems:
                    # ort-webgpu runs once, last: a SwiftShader WebGPU run can outlast its window and keep the GPU
                    # process busy, which would spill into the next system's window.
                    once = system in ("ort-native", "ort-webgpu")
                    if (once and rnd != (0 if system == "ort-native" else rounds - 1)) or \
                            (raws[system] and "error" in raws[system][-1]):
                        continue
                    echo(f"  {net}: {system}" + (f" (round {rnd + 1}/{rounds})" if rounds > 1 and not once else "")
                         + " ...")
                    if system == "ort-native":
                        _open_blank(b)   # nothing else running in the browser meanwhile
                        raws[system] = ort_native(info, seconds, min_inferences, max_seconds)
                        echo(f"    {raws[system]['inferences']} inferences, p50 {_ms(raws[system]['latency_p50_ms'])} ms")
                        continue
                    prefix = "/bench-peer/" if system in PEER_SYSTEMS else "/runtime/"
                    b.errors.clear()
                    _open(b, b.server.url + prefix + "bench.html")
                    window = {"seconds": seconds, "minInferences": min_inferences, "maxSeconds": max_seconds} \
                        if once else per
                    config = {"system": system, "base": f"/models/{net}/", "shape": list(info["shape"]), **window,
                              "budgetMs": budget_ms, "trace": trace}
                    raw = b.page.evaluate("(c) => window.bench.start(c)", config)
                    raw["system"] = system
                    if b.errors:
                        raw["note"] = "; ".join(b.errors[:3])[:300]
                    raws[system].append(raw)
                    echo(f"    {raw['error']}" if "error" in raw else
                         f"    {len(raw['latencies'])} inferences, p50 {_fmt(_pct(raw['latencies'], 50), 0)} ms")
            results = [raws[system] if system == "ort-native" else summarise(raws[system], info["reference"])
                       for system in systems]
            # Other work on this machine shows up in every figure: say how busy it was.
            info["env"] = (f"Headless Chromium {browser_version} (SwiftShader WebGL2), {os.cpu_count()} CPUs, 1-minute load "
                           f"average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after this network's runs.")
            table = markdown(net, results, info)
            plot(net, results, out_dir / f"{net}-frames.png")
            report["networks"][net] = {"shape": list(info["shape"]), "stats": info["stats"], "env": info["env"],
                                       "results": results,
                                       "speed": speed_ratios(results), "markdown": table}
    text = "\n".join(v["markdown"] for v in report["networks"].values())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.md").write_text(text)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=1))
    report["text"] = text
    return report
