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
        from midiseed.daemon.ports import PortError
        from midiseed.engine import ModelError
        from midiseed.export.errors import ExportError
        from midiseed.midifile import MidiReadError
        from midiseed.training.corpus import DataError

        try:
            return fn(*args, **kwargs)
        except (
            DataError,
            CodecError,
            MidiReadError,
            ModelError,
            ExportError,
            PortError,
            ValueError,
            FileNotFoundError,
            PermissionError,
        ) as err:
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
    stride: Annotated[
        int | None, typer.Option(min=1, help="Tokens between window starts (default seq_len/4).")
    ] = None,
    devices: Annotated[
        str, typer.Option(help="auto, or e.g. GPU:0,GPU:1 for data-parallel training.")
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    drums: Annotated[bool, typer.Option(help="Keep drum tracks (channel 10).")] = False,
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
    init: Annotated[
        Path | None,
        typer.Option(help="Start from the weights of this finished run (same preset and data): fine-tuning."),
    ] = None,
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
        stride=stride,
        devices=devices,
        seed=seed,
        include_drums=drums,
        learning_rate=learning_rate,
        anti_loop=anti_loop,
        init=str(init) if init else None,
        keep=keep,
        loop_period=loop_period,
    )
    metrics = run_training(opts)
    typer.echo(
        f"trained {out}: held-out loss {metrics['held_out_loss']:.3f}, "
        f"accuracy {metrics['held_out_accuracy']:.3f} "
        f"(best epoch {metrics['best_epoch']} of {metrics['epochs_run']}), "
        f"{metrics['train_tokens_per_second'] or 0:.0f} tokens/s"
    )


@app.command()
@_user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `midiseed train`.")],
    out: Annotated[Path, typer.Option(help="The ONNX file to write.")],
    int8: Annotated[bool, typer.Option("--int8", help="Dynamic int8 quantisation of the weights.")] = False,
) -> None:
    """Export a trained run to one self-describing, stateful ONNX file (checked against Keras)."""
    _setup_logging()
    from midiseed.export.onnx_export import export as run_export

    report = run_export(run_dir, out, int8=int8)
    typer.echo(
        f"wrote {out}: max |Δp| vs Keras {report['max_abs_prob_diff']:.1e}, "
        f"top-1 agreement {report['top1_agreement']:.2%}, streaming vs one call "
        f"{report['stream_vs_batch_max_prob_diff']:.1e} on {report['windows']} held-out windows"
    )


def _decoding(temperature: float, top_k: int, no_repeat: int):
    from midiseed.sampling import Decoding

    return Decoding(temperature=temperature, top_k=top_k, no_repeat=no_repeat)


@app.command()
@_user_errors
def generate(
    out: Annotated[Path, typer.Option(help="The MIDI file to write (seed + continuation).")],
    steps: Annotated[int, typer.Option(min=1, max=100_000, help="Events to generate.")] = 64,
    model: Annotated[Path | None, typer.Option(help="ONNX model (default: the shipped one).")] = None,
    seed_file: Annotated[Path | None, typer.Option(help="A MIDI file to continue.")] = None,
    seed_notes: Annotated[
        str | None, typer.Option(help="Notes to continue, e.g. 'C4 E4 G4' or 'C4+E4:2'.")
    ] = None,
    temperature: Annotated[float, typer.Option(min=0, max=10, help="0 = greedy.")] = 0.0,
    top_k: Annotated[int, typer.Option(min=0, help="Sample among the k likeliest (0 = all).")] = 0,
    no_repeat: Annotated[int, typer.Option(min=0, help="Forbid repeating token n-grams of this length.")] = 0,
    bpm: Annotated[float, typer.Option(min=20, max=400)] = 120.0,
    png: Annotated[Path | None, typer.Option(help="Also draw a piano roll of seed and continuation.")] = None,
    random_seed: Annotated[int, typer.Option(help="For sampling.")] = 0,
) -> None:
    """Continue a seed offline: the seed is read in one call, then one model step per token."""
    _setup_logging()
    if (seed_file is None) == (seed_notes is None):
        raise typer.BadParameter("give exactly one of --seed-file and --seed-notes", param_hint="--seed-file")
    from midiseed.codec import events_to_notes, notes_to_events
    from midiseed.engine import Engine
    from midiseed.generate import Generator, parse_seed_notes
    from midiseed.midifile import read_notes, write_notes

    engine = Engine(model)
    grid = engine.codec.grid
    if seed_file is not None:
        seed = notes_to_events(read_notes(seed_file, grid), grid)
        if not seed:
            raise ValueError(f"seed file {seed_file} has no pitched notes")
    else:
        seed = parse_seed_notes(seed_notes or "", grid.steps_per_beat)
    gen = Generator(engine, _decoding(temperature, top_k, no_repeat), seed=random_seed)
    gen.prime(seed)
    continuation = gen.generate(steps)
    notes = events_to_notes(seed + continuation)
    write_notes(notes, out, grid, bpm=bpm)
    seed_steps = sum(ev.steps for ev in seed)
    if png is not None:
        from midiseed.pianoroll import draw

        draw(notes, seed_steps, grid, png)
    beats = sum(ev.steps for ev in continuation) / grid.steps_per_beat
    typer.echo(
        f"wrote {out}: {len(seed)} seed events + {steps} generated ({beats:g} beats) with {engine.path.name}"
    )


@app.command()
@_user_errors
def evaluate(
    data: Annotated[
        Path, typer.Option(help="Folder of MIDI files; files the model trained on are left out.")
    ],
    model: Annotated[Path | None, typer.Option(help="ONNX model (default: the shipped one).")] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            min=1, help="Held-out seeds for the decoding comparison (default: every piece long enough)."
        ),
    ] = None,
    steps: Annotated[int, typer.Option(min=8, help="Events generated from each seed.")] = 256,
    no_repeat: Annotated[
        list[int] | None, typer.Option(min=2, help="Compare greedy with these no-repeat guards instead.")
    ] = None,
    loop_period: Annotated[
        int, typer.Option(min=1, max=64, help="Longest loop period counted, in events.")
    ] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
) -> None:
    """Score a model on music it did not train on, beside n-gram baselines; measure loops and variety."""
    _setup_logging()
    import json

    from midiseed.evaluate import evaluate as run_evaluation
    from midiseed.evaluate import format_report
    from midiseed.sampling import Decoding

    decodings = None
    if no_repeat:
        decodings = {"greedy": Decoding(), **{f"no_repeat_{n}": Decoding(no_repeat=n) for n in no_repeat}}
    report = run_evaluation(
        model, data, seeds=seeds, steps=steps, decodings=decodings, max_period=loop_period
    )
    typer.echo(json.dumps(report, indent=1) if as_json else format_report(report))


@app.command()
@_user_errors
def bench(
    model: Annotated[Path | None, typer.Option(help="ONNX model (default: the shipped one).")] = None,
    data: Annotated[
        Path | None, typer.Option(help="MIDI folder for the data figures (default: data/bach).")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer repetitions (about a minute).")] = False,
    jack: Annotated[
        bool, typer.Option(help="Measure through real JACK ports (starts a dummy server).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of the table.")] = False,
    save: Annotated[Path | None, typer.Option(help="Also write the JSON results here.")] = None,
) -> None:
    """Measure step latency, the seed approach side by side, data speed, and live timing on JACK."""
    _setup_logging()
    import json

    from midiseed.bench import format_table, run_bench

    default_data = Path(__file__).resolve().parents[1] / "data" / "bach"
    results = run_bench(
        model, quick=quick, jack=jack, data_dir=data or (default_data if default_data.is_dir() else None)
    )
    text = json.dumps(results, indent=1)
    if save is not None:
        save.write_text(text)
    typer.echo(text if as_json else format_table(results))


DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config.toml"


@app.command()
@_user_errors
def serve(
    config: Annotated[
        Path | None, typer.Option(help="A config.toml (default: the one beside midiseed).")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="ONNX model (default: the shipped one).")] = None,
    backend: Annotated[str | None, typer.Option(help="auto, alsa, jack, coremidi or windows.")] = None,
    mode: Annotated[
        str | None, typer.Option(help="respond (call and response) or continue (a stream).")
    ] = None,
    bpm: Annotated[float | None, typer.Option(help="Internal tempo.")] = None,
    clock: Annotated[
        str | None, typer.Option(help="internal, or midi to follow the DAW's MIDI clock.")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="onnxruntime provider: auto, cpu or cuda.")] = None,
    record: Annotated[
        Path | None, typer.Option(help="Record every session to a .mid file in this folder.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every note (debug level).")] = False,
) -> None:
    """Run the daemon: virtual MIDI ports in and out, answering what is played, in time."""
    from midiseed.daemon import config as daemon_config

    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    overrides = {
        "model": str(model) if model else None,
        "backend": backend,
        "mode": mode,
        "bpm": bpm,
        "clock": clock,
        "provider": provider,
        "log_level": "debug" if verbose else None,
        "record": str(record) if record else None,
    }
    cfg = daemon_config.override(daemon_config.load(path), **overrides)
    _setup_logging(cfg.log_level == "debug")
    logging.getLogger().setLevel(cfg.log_level.upper())
    from midiseed.daemon.service import Service

    def reread() -> daemon_config.Config:
        return daemon_config.override(daemon_config.load(path), **overrides)

    raise typer.Exit(Service(cfg, reload_config=reread).run())


@app.command()
@_user_errors
def status(
    config: Annotated[Path | None, typer.Option(help="The config.toml the daemon was started with.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full JSON.")] = False,
) -> None:
    """Ask a running daemon (over its local socket) what it has heard, played and dropped."""
    import json

    from midiseed.daemon import config as daemon_config
    from midiseed.daemon.status import ask, socket_path

    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    cfg = daemon_config.load(path)
    where = socket_path(cfg.status_socket, cfg.client_name)
    try:
        info = ask(where)
    except (FileNotFoundError, ConnectionRefusedError) as err:
        raise ValueError(f"no midiseed is running with status socket {where}") from err
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    typer.echo(
        f"midiseed pid {info['pid']}, up {info['uptime_s']:.0f} s, {info['mode']}, "
        f"{info['tempo_bpm']:g} bpm ({info['tempo_source']}): "
        f"notes in {info['notes_in']}, out {info['notes_out']}, "
        f"answers {info['answers']}, dropped {info['dropped']}, event p99 {info['event_ms_p99']} ms"
    )


@app.command()
@_user_errors
def ports() -> None:
    """List MIDI backends and their ports."""
    from midiseed.daemon.ports import list_ports

    for backend, info in list_ports().items():
        if isinstance(info, str):
            typer.echo(f"{backend}: {info}")
            continue
        typer.echo(f"{backend}:")
        for kind in ("inputs", "outputs"):
            typer.echo(f"  {kind}: {', '.join(info[kind]) or '(none)'}")


@app.command()
@_user_errors
def panic(
    port: Annotated[str, typer.Option(help="The port (or part of its name) that plays the stuck notes.")],
    backend: Annotated[str, typer.Option(help="auto, alsa, jack, coremidi or windows.")] = "auto",
) -> None:
    """Send all notes off to a port: for a receiver left with notes on after midiseed was killed (-9)."""
    from midiseed.daemon.ports import panic as send_panic

    sent = send_panic(backend, port)
    typer.echo(f"sent {sent} messages (sustain off, all sound off, all notes off, every note off) to {port}")


def main() -> None:  # pragma: no cover - console entry point
    app()
