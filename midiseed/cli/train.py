"""`midiseed train` and `midiseed export`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from midiseed.cli._app import app, setup_logging, user_errors
from midiseed.errors import require_extra


@app.command()
@user_errors
def train(
    data: Annotated[
        Path,
        typer.Option(
            help="A token store (`midiseed data tokenize`), or a folder of MIDI files (searched "
            "recursively), tokenised first into a cached store that later runs reuse."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Run directory to write (an existing one is resumed).")],
    preset: Annotated[
        str, typer.Option(help="seed, default, wide, large or tiny (midiseed/training/model.py).")
    ] = "default",
    epochs: Annotated[int, typer.Option(min=1)] = 150,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    seq_len: Annotated[
        int | None, typer.Option(min=2, help="Window length in tokens (default: preset's).")
    ] = None,
    patience: Annotated[int, typer.Option(min=1, help="Early stopping: epochs without improvement.")] = 10,
    val_fraction: Annotated[
        float, typer.Option(min=0.01, max=0.9, help="Share of files for validation (early stopping).")
    ] = 0.1,
    test_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share of files for test (recorded, never trained on).")
    ] = 0.1,
    transpose: Annotated[
        str,
        typer.Option(help="Each training window moves by a random shift in this range (that fits 0..127)."),
    ] = "-5..6",
    stride: Annotated[
        int | None, typer.Option(min=1, help="Tokens between window starts (default seq_len/4).")
    ] = None,
    steps_per_epoch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Batches an epoch (default: one pass over the training windows); the next epoch "
            "goes on where the last stopped. For corpora whose pass is too long to be an epoch.",
        ),
    ] = None,
    val_windows: Annotated[
        int, typer.Option(min=1, help="Most validation (and test) windows scored, evenly spread.")
    ] = 20_000,
    devices: Annotated[
        str, typer.Option(help="auto, or e.g. GPU:0,GPU:1 for data-parallel training.")
    ] = "auto",
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 0,
    drums: Annotated[
        bool, typer.Option(help="Keep drum tracks (channel 10) when tokenising a MIDI folder.")
    ] = False,
    learning_rate: Annotated[float, typer.Option(min=1e-7, max=1.0, help="Adam's learning rate.")] = 1e-3,
    anti_loop: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.95,
            help="Train against greedy loops: this share of each batch is short stretches of the "
            "music repeated, where repeating is taught to grow less likely (DITTO). 0.5 is what the "
            "shipped model used.",
        ),
    ] = 0.0,
    loop_period: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="With --anti-loop: the longest loop of its own greedy output, in events, to train "
            "against (longer than 8 counts only when played three times running).",
        ),
    ] = 8,
    keep: Annotated[
        str,
        typer.Option(
            help="Which epoch becomes model.keras: best (lowest held-out loss) or last "
            "(for --anti-loop fine-tuning, whose aim the held-out loss does not measure)."
        ),
    ] = "best",
    time_limit: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Minutes to train in this session: it stops at the first epoch end after them and "
            "writes the model it has; the same command resumes the run.",
        ),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(help="Start from the weights of this finished run (same preset and data): fine-tuning."),
    ] = None,
) -> None:
    """Train a stacked LSTM on a token store or a folder of MIDI files.

    With TF_CONFIG set (the same command on every machine), trains data-parallel across them."""
    setup_logging()
    tensorflow = ("tensorflow",) if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow" else ()
    require_extra("midiseed train", ("keras", *tensorflow))
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
        test_fraction=test_fraction,
        transpose=transpose,
        stride=stride,
        steps_per_epoch=steps_per_epoch,
        val_windows=val_windows,
        devices=devices,
        seed=seed,
        include_drums=drums,
        learning_rate=learning_rate,
        anti_loop=anti_loop,
        init=str(init) if init else None,
        keep=keep,
        loop_period=loop_period,
        time_limit=time_limit,
    )
    try:
        metrics = run_training(opts)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the same command resumes {out} after its last finished epoch", err=True)
        raise typer.Exit(130) from None
    typer.echo(
        f"trained {out}: validation loss {metrics['held_out_loss']:.3f}, "
        f"accuracy {metrics['held_out_accuracy']:.3f} "
        f"(best epoch {metrics['best_epoch']} of {metrics['epochs_run']}), "
        f"{metrics['train_tokens_per_second'] or 0:.0f} tokens/s"
    )


@app.command()
@user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `midiseed train`.")],
    out: Annotated[Path, typer.Option(help="The ONNX file to write.")],
    int8: Annotated[bool, typer.Option("--int8", help="Dynamic int8 quantisation of the weights.")] = False,
) -> None:
    """Export a trained run to one self-describing, stateful ONNX file (checked against Keras)."""
    setup_logging()
    require_extra("midiseed export", ("keras", "tensorflow", "tf2onnx", "onnx"))
    from midiseed.export.onnx_export import export as run_export

    report = run_export(run_dir, out, int8=int8)
    typer.echo(
        f"wrote {out}: max |Δp| vs Keras {report['max_abs_prob_diff']:.1e}, "
        f"top-1 agreement {report['top1_agreement']:.2%}, streaming vs one call "
        f"{report['stream_vs_batch_max_prob_diff']:.1e} on {report['windows']} held-out windows"
    )
