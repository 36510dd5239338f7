"""The `midiseed` command line. Only this layer prints for people; everything below raises or logs.

Heavy imports (TensorFlow, onnxruntime, music21) happen inside the commands that need them,
so `midiseed --help` and the daemon never pay for training's dependencies.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="A real-time MIDI generator.")
data_app = typer.Typer(no_args_is_help=True, help="Prepare training data.")
app.add_typer(data_app, name="data")

log = logging.getLogger("midiseed")


def _setup_logging(verbose: bool = False) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def _user_errors(fn):
    """Turn the errors a user can cause into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from midiseed.codec import CodecError
        from midiseed.midifile import MidiReadError
        from midiseed.training.corpus import DataError

        try:
            return fn(*args, **kwargs)
        except (DataError, CodecError, MidiReadError, ValueError, FileNotFoundError, PermissionError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@data_app.command("music21")
@_user_errors
def data_music21(
    out: Annotated[Path, typer.Option(help="Folder to write the .mid files to.")],
    composer: Annotated[str, typer.Option(help="A composer in music21's bundled corpus.")] = "bach",
    limit: Annotated[int | None, typer.Option(min=1, help="Write at most this many pieces.")] = None,
) -> None:
    """Write pieces from the corpus bundled with music21 as .mid files (offline training data)."""
    _setup_logging()
    from midiseed.training.corpus import export_music21

    written = export_music21(out, composer, limit)
    typer.echo(f"wrote {len(written)} MIDI files to {out}")


@app.command()
@_user_errors
def train(
    data: Annotated[Path, typer.Option(help="Folder of MIDI files (searched recursively).")],
    out: Annotated[Path, typer.Option(help="Run directory to write (an existing one is resumed).")],
    preset: Annotated[str, typer.Option(help="seed, default or tiny.")] = "default",
    epochs: Annotated[int, typer.Option(min=1)] = 150,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    seq_len: Annotated[
        int | None, typer.Option(min=2, help="Window length in events (default: preset's).")
    ] = None,
    patience: Annotated[int, typer.Option(min=1, help="Early stopping: epochs without improvement.")] = 10,
    val_fraction: Annotated[float, typer.Option(min=0.01, max=0.9, help="Share of files held out.")] = 0.1,
    transpose: Annotated[str, typer.Option(help="Augmentation: transpositions, e.g. -5..6 or 0.")] = "-5..6",
    devices: Annotated[
        str, typer.Option(help="auto, or e.g. GPU:0,GPU:1 for data-parallel training.")
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    drums: Annotated[bool, typer.Option(help="Keep drum tracks (channel 10).")] = False,
) -> None:
    """Train a stacked LSTM on a folder of MIDI files."""
    _setup_logging()
    from midiseed.training.model import PRESETS

    if preset not in PRESETS:
        raise typer.BadParameter(
            f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}", param_hint="--preset"
        )
    from midiseed.training.train import TrainOptions
    from midiseed.training.train import train as run_training

    opts = TrainOptions(
        data=str(data),
        out=str(out),
        preset=preset,
        epochs=epochs,
        batch_size=batch_size,
        seq_len=seq_len,
        patience=patience,
        val_fraction=val_fraction,
        transpose=transpose,
        devices=devices,
        seed=seed,
        include_drums=drums,
    )
    metrics = run_training(opts)
    typer.echo(
        f"trained {out}: held-out loss {metrics['held_out_loss']:.3f}, "
        f"accuracy {metrics['held_out_accuracy']:.3f} "
        f"(best epoch {metrics['best_epoch']} of {metrics['epochs_run']}), "
        f"{metrics['train_tokens_per_second']:.0f} tokens/s"
    )


def main() -> None:  # pragma: no cover - console entry point
    app()
