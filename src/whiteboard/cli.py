"""The whiteboard command line: train, evaluate and inspect the segmentation model."""
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


def main():
    run_cli(cli)
