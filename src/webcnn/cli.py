"""The webcnn command line: compile, verify, serve, bench."""
from __future__ import annotations

import json
import os
import sys
import time

import click

from .errors import WebcnnError


def run_cli(group):
    """Run a click group: user errors print one line and exit 2; no tracebacks unless WEBCNN_DEBUG=1."""
    try:
        group.main(standalone_mode=False)
    except WebcnnError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        if os.environ.get("WEBCNN_DEBUG"):
            raise
        click.echo(f"internal error ({type(e).__name__}): {e}. Re-run with WEBCNN_DEBUG=1 for a traceback and "
                   "please report it.", err=True)
        sys.exit(3)


@click.group()
@click.version_option(package_name="webcnn")
def cli():
    """Compile CNNs to WebGL2 bundles and run them in the browser without freezing the page."""


input_shape_option = click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]1,3,H,W",
                                  help="Fix an input's shape (needed for symbolic dimensions). Repeatable.")


@cli.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Bundle directory.")
@input_shape_option
@click.option("--max-texture-size", default=4096, show_default=True, help="Largest texture side the bundle may use.")
@click.option("--tile-mflops", default=8.0, show_default=True, help="Upper bound on one draw's work, in MFLOP.")
@click.option("--debug-tensors", is_flag=True, help="Keep every intermediate tensor readable (bigger, slower).")
@click.option("--stats", is_flag=True, help="Print FLOPs, passes, draws and memory (texture bytes vs the lower bound).")
@click.option("--phases", default=8, show_default=True, type=click.IntRange(1, 8),
              help="Output pixels per fragment (render targets); 4 for devices with only 4 draw buffers.")
def compile_cmd(model, out_dir, input_shapes, max_texture_size, tile_mflops, debug_tensors, stats, phases):
    """Compile MODEL into a bundle: model.json + weights.bin.

    MODEL is an .onnx file, or a PyTorch file saved with torch.jit.save (.pt, .pth: give --input-shape) or
    torch.export.save (.pt2)."""
    from .compiler import compile as compile_model
    from .importer import parse_input_shapes

    t0 = time.perf_counter()
    bundle = compile_model(model, input_shapes=parse_input_shapes(input_shapes), max_texture_size=max_texture_size,
                           max_tile_flops=tile_mflops * 1e6, debug_tensors=debug_tensors, phases=phases,
                           out_dir=out_dir)
    totals = bundle.stats()
    click.echo(f"wrote {out_dir}/model.json and weights.bin ({totals['weightBytes'] / 1e6:.2f} MB) in "
               f"{time.perf_counter() - t0:.1f} s")
    if stats:
        click.echo(json.dumps(totals, indent=1))
        m = totals["memory"]
        click.echo(f"textures {m['textureBytes'] / 1e6:.2f} MB (fp32; fp16 storage halves the activations') "
                   f"vs lower bound {m['lowerBoundBytes'] / 1e6:.2f} MB (peak live activations "
                   f"{m['peakLiveActivationBytes'] / 1e6:.2f} MB + weights {m['weightTextureBytes'] / 1e6:.2f} MB): ratio {m['ratio']:.3f}")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@input_shape_option
@click.option("--per-layer", is_flag=True, help="Also compare every intermediate tensor; report the first divergent.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--seed", default=0, show_default=True, help="Seed of the random input.")
def verify(model, input_shapes, per_layer, precision, seed):
    """Compile MODEL, run it in headless Chromium and compare every output with onnxruntime."""
    from .importer import parse_input_shapes
    from .verify import format_report, verify as run_verify

    report = run_verify(model, parse_input_shapes(input_shapes), per_layer=per_layer, precision=precision, seed=seed)
    click.echo(format_report(report))
    if not report.ok:
        click.echo("error: outputs differ from onnxruntime beyond tolerance", err=True)
        sys.exit(1)


@cli.command()
@click.argument("directories", nargs=-1, type=click.Path(file_okay=False, exists=True))
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def serve(directories, port):
    """Serve the runtime (/runtime/) and DIRECTORIES (/d0/, /d1/, ...) on 127.0.0.1."""
    from .serve import Server

    server = Server({f"d{i}": d for i, d in enumerate(directories)}, port=port)
    click.echo(f"serving on {server.url}/ : /runtime/ " + " ".join(f"/d{i}/={d}" for i, d in enumerate(directories)))
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


@cli.command()
@click.option("--network", "networks", default="mobilenetv2", show_default=True,
              help="Comma-separated: mobilenetv2 (224x224), whiteboard (the app's U-Net, 360x640), unet (the zoo's "
                   "20 GFLOP U-Net, 360x640), a path to an .onnx model, or all (mobilenetv2,whiteboard).")
@click.option("--seconds", default=8.0, show_default=True, help="Window of continuous inference per system.")
@click.option("--min-inferences", default=5, show_default=True, help="Stretch a window until this many inferences.")
@click.option("--max-seconds", type=float, default=None, help="Longest window (default: max(60, 4 x --seconds)).")
@click.option("--systems", default="all", show_default=True,
              help="Comma-separated: idle, webcnn, webcnn-throughput, tfjs-webgl, ort-wasm, ort-wasm-proxy, ort-webgpu, "
                   "ort-native (onnxruntime CPU in Python).")
@click.option("--budget-ms", type=float, default=None, help="webcnn's per-frame GPU budget (default: the runtime's).")
@click.option("-o", "--output", "out_dir", default="out/bench", show_default=True, type=click.Path(file_okay=False))
@click.option("--models-dir", type=click.Path(file_okay=False), default=None,
              help="Where the compiled networks go (default: OUTPUT/models).")
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(1, 10),
              help="Split each window into this many rounds, interleaving the systems (evens out other load).")
@click.option("--trace", is_flag=True, help="Record webcnn's scheduler slices in bench.json (debugging).")
def bench(networks, seconds, min_inferences, max_seconds, systems, budget_ms, out_dir, models_dir, rounds, trace):
    """Page responsiveness and speed: webcnn vs TF.js WebGL and ONNX Runtime Web in one headless Chromium."""
    from .bench import ALL_NETWORKS, NETWORKS, SYSTEMS, run_bench

    nets = ALL_NETWORKS if networks == "all" else networks.split(",")
    chosen = SYSTEMS if systems == "all" else systems.split(",")
    for name, known in [(n, NETWORKS) for n in nets if not n.endswith(".onnx")] + [(s, SYSTEMS) for s in chosen]:
        if name not in known:
            raise WebcnnError(f"unknown {'network' if known is NETWORKS else 'system'} {name!r}; choose from "
                              f"{', '.join(known)}")
    report = run_bench(nets, chosen, seconds, out_dir, budget_ms=budget_ms, min_inferences=min_inferences,
                       max_seconds=max_seconds, models_dir=models_dir, rounds=rounds, trace=trace, echo=click.echo)
    click.echo("")
    click.echo(report["text"])
    click.echo(f"wrote {out_dir}/bench.json, bench.md and " + ", ".join(f"{n}-frames.png" for n in report["networks"]))


@cli.command()
@click.option("--systems", default="webcnn,tfjs-webgl", show_default=True,
              help="webcnn and/or tfjs-webgl (TF.js from scripts/bench-setup.sh).")
@click.option("--phases", "phase_list", default="8", show_default=True,
              help="Comma-separated phase counts to compare (1 = one pixel per fragment, the old kernels).")
@click.option("--rounds", default=3, show_default=True, help="Alternating rounds; the best of each is kept.")
@click.option("--profile", "profile_model", type=click.Path(dir_okay=False), default=None,
              help="Instead: time every pass of this model's bundle.")
@click.option("--against", "against_rev", metavar="REV", default=None,
              help="With --profile: time the whole model compiled by git revision REV and by this tree, alternating.")
@input_shape_option
def kernels(systems, phase_list, rounds, profile_model, against_rev, input_shapes):
    """Per-layer GFLOP/s of each conv kind, webcnn vs TF.js WebGL on the same shape (or --profile MODEL)."""
    from . import kernelbench
    from .importer import parse_input_shapes

    phases = [int(p) for p in phase_list.split(",")]
    if against_rev:
        if not profile_model:
            raise WebcnnError("--against needs --profile MODEL: the model to compile both ways")
        kernelbench.against(profile_model, against_rev, parse_input_shapes(input_shapes), rounds=rounds,
                            echo=click.echo)
        return
    if profile_model:
        kernelbench.profile(profile_model, parse_input_shapes(input_shapes), phases=phases[0], echo=click.echo)
        return
    chosen = systems.split(",")
    for s in chosen:
        if s not in ("webcnn", "tfjs-webgl"):
            raise WebcnnError(f"unknown system {s!r}; choose from webcnn, tfjs-webgl")
    # P=1 is the kernels and layout before the phased kernels (one pixel per fragment, slices in one column).
    variants = ({f"webcnn P={p}": {"phases": p, "wide_rows": p > 1} for p in phases} if len(phases) > 1
                else {"webcnn": {"phases": phases[0], "wide_rows": phases[0] > 1}})
    if "webcnn" not in chosen:
        variants = {}
    kernelbench.run_kernels(variants, tfjs="tfjs-webgl" in chosen, rounds=rounds, echo=click.echo)


def main():
    run_cli(cli)


if __name__ == "__main__":
    main()
