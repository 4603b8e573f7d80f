"""verify: compile, run in headless Chromium on a seeded random input, compare with onnxruntime."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort

from .browser import Browser
from .compiler import compile as compile_model
from .errors import WebcnnError
from .importer import fix_input_shapes, load_model

TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2}  # max abs error / max(1, max |reference|)


@dataclass
class Comparison:
    name: str
    shape: tuple
    max_abs: float
    max_ref: float

    @property
    def scaled(self) -> float:
        return self.max_abs / max(1.0, self.max_ref)

    @property
    def max_rel(self) -> float:
        return self.max_abs / self.max_ref if self.max_ref > 0 else self.max_abs


@dataclass
class Report:
    outputs: list[Comparison]
    tolerance: float
    precision: str
    layers: list[Comparison] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.scaled <= self.tolerance for c in self.outputs)

    @property
    def first_divergent(self) -> Comparison | None:
        return next((c for c in self.layers if c.scaled > self.tolerance), None)


def compare(name, got: np.ndarray, ref: np.ndarray) -> Comparison:
    ref = np.asarray(ref, np.float32)
    if got.size != ref.size:
        raise WebcnnError(f"output '{name}' has {got.size} values, onnxruntime gives {ref.size}")
    got = got.reshape(ref.shape)
    bad = ~np.isfinite(got) & np.isfinite(ref)
    max_abs = float("inf") if bad.any() else float(np.nan_to_num(np.abs(got - ref), nan=0.0).max(initial=0.0))
    return Comparison(name, tuple(ref.shape), max_abs, float(np.abs(ref[np.isfinite(ref)]).max(initial=0.0)))


def random_inputs(manifest: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {t["name"]: rng.standard_normal(t["shape"]).astype(np.float32) for t in manifest["inputs"]}


def reference(proto: onnx.ModelProto, inputs: dict, extra_outputs=()) -> dict:
    model = onnx.ModelProto.FromString(proto.SerializeToString())
    existing = {o.name for o in model.graph.output}
    for name in extra_outputs:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.log_severity_level = 4   # errors come back as one WebcnnError line (below)
    if extra_outputs:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, inputs)))
    except Exception as e:  # onnxruntime's own limits (e.g. dilations with auto_pad SAME_*): not webcnn's verdict
        first = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
        raise WebcnnError(f"onnxruntime, verify's reference, cannot run this model: {first}. webcnn compiled it; "
                          "compare its output (webcnn compile, then run) against another reference") from None


def verify(model, input_shapes=None, *, per_layer=False, precision="fp32", seed=0, browser: Browser | None = None,
           example_input=None, **compile_options) -> Report:
    proto = load_model(model, example_input, input_shapes)
    with tempfile.TemporaryDirectory(prefix="webcnn-verify-") as tmp:
        bundle = compile_model(proto, input_shapes=input_shapes, debug_tensors=per_layer, out_dir=tmp,
                               **compile_options)
        manifest = bundle.manifest
        inputs = random_inputs(manifest, seed)
        fixed = fix_input_shapes(proto, {t["name"]: tuple(t["shape"]) for t in manifest["inputs"]})
        known = {o for node in proto.graph.node for o in node.output}
        debug_names = [t["name"] for t in manifest["debugTensors"] if t["name"] in known]
        ref = reference(fixed, inputs, debug_names)
        own = browser is None
        br = Browser().__enter__() if own else browser
        try:
            model_id = br.load(tmp, precision=precision)
            try:
                outputs, debug, stats = br.run(model_id, inputs, debug=per_layer)
            finally:
                br.dispose(model_id)
        finally:
            if own:
                br.__exit__(None, None, None)
    report = Report([compare(t["name"], outputs[t["name"]], ref[t["name"]]) for t in manifest["outputs"]],
                    TOLERANCE[precision], precision, stats=stats)
    report.layers = [compare(n, debug[n], ref[n]) for n in debug_names if n in ref]
    return report


def format_report(report: Report) -> str:
    lines = [f"{'output':<40} {'shape':<20} {'max abs':>11} {'max rel':>11} {'max|ref|':>11}  result"]
    for c in report.outputs:
        verdict = "ok" if c.scaled <= report.tolerance else "FAIL"
        lines.append(f"{c.name[:40]:<40} {str(list(c.shape)):<20} {c.max_abs:11.3e} {c.max_rel:11.3e} "
                     f"{c.max_ref:11.3e}  {verdict}")
    lines.append(f"precision {report.precision}; tolerance: max abs <= {report.tolerance:g} x max(1, max|ref|)")
    if report.layers:
        bad = report.first_divergent
        if bad is None:
            lines.append(f"per layer: all {len(report.layers)} intermediate tensors within tolerance")
        else:
            lines.append(f"per layer: first divergent tensor '{bad.name}' {list(bad.shape)}: max abs "
                         f"{bad.max_abs:.3e} (max|ref| {bad.max_ref:.3e})")
    return "\n".join(lines)
