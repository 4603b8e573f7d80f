"""The whiteboard command line: train, evaluate and inspect the model; enhance files; serve the live app."""
from __future__ import annotations

import click

from webcnn.cli import run_cli

PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.group()
def cli():
    """Whiteboard segmentation (board / ink / foreground) and enhancement, on webcnn."""


@cli.command(context_settings=PASS_THROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train(args):
    """Train the model on synthetic boards (see `whiteboard train --help`)."""
    from .train import main as train_main

    train_main(list(args))


@cli.command(context_settings=PASS_THROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def evaluate(args):
    """Metrics on the held-out synthetic test set, with the classical baseline."""
    from .evaluate import evaluate_main

    evaluate_main(list(args))


@cli.command("contact-sheet", context_settings=PASS_THROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def contact_sheet(args):
    """Input | predicted classes | enhanced board, for every real photograph."""
    from .evaluate import contact_sheet_main

    contact_sheet_main(list(args))


@cli.command()
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port on 127.0.0.1.")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False), help="ONNX model (default: the bundled one).")
def serve(port, model_path):
    """Serve the live app (camera -> clean, see-through board) on http://127.0.0.1:PORT/app/."""
    from .app import MODEL_PATH, serve as serve_app

    serve_app(port, model_path or MODEL_PATH, echo=click.echo)


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output_path", required=True, type=click.Path(dir_okay=False),
              help="PNG for an image; mp4/avi/webm for a video (or PNG: the video's final board).")
@click.option("--corners", default=None, metavar="X,Y,X,Y,X,Y,X,Y",
              help="Board corners in input pixels: top-left, top-right, bottom-right, bottom-left (default: the whole frame).")
@click.option("--size", default=None, metavar="WxH", help="Output size (default: the board's size in the input, at most 1920).")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False), help="ONNX model (default: the bundled one).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def enhance(input_path, output_path, corners, size, model_path, no_progress):
    """Clean board from INPUT (PNG/JPEG image or mp4/webm/avi/y4m video), through the live app's shaders in headless Chromium."""
    import time

    from .app import MODEL_PATH
    from .enhance import enhance_file

    t0 = time.perf_counter()
    frames = enhance_file(input_path, output_path, corners=corners, size=size, model_path=model_path or MODEL_PATH,
                          progress=not no_progress)
    click.echo(f"wrote {output_path} ({frames} frame{'s' if frames != 1 else ''} in {time.perf_counter() - t0:.1f} s)")


def main():
    run_cli(cli)


if __name__ == "__main__":
    main()
