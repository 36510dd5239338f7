"""`midiseed generate` and `midiseed evaluate`: the model offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from midiseed.cli._app import app, setup_logging, user_errors
from midiseed.errors import BadValue, output_file


def _decoding(
    temperature: float,
    top_k: int,
    no_repeat: int,
    loop_guard: int,
    memory: float,
    pitch_guard: bool = False,
    anchor: int = 0,
):
    from midiseed.runtime.sampling import Decoding

    return Decoding(
        temperature=temperature,
        top_k=top_k,
        no_repeat=no_repeat,
        loop_guard=loop_guard,
        memory=memory,
        pitch_guard=pitch_guard,
        anchor=anchor,
    )


MAX_SEED_EVENTS = 8192  # a seed file of hours is refused, not read for minutes into gigabytes
PITCH_GUARD_HELP = (
    "When the answer keeps two voices or more, the loop guard also hears chords cycling through the"
    " same notes at other lengths as a loop, and plays other notes (off by default: see the model card)."
)
ANCHOR_HELP = (
    "From this many events into the answer on, stay where the seed was: its own register, in chords a"
    " bass no higher than the seed's, and the pitch guard on; 64 is the value measured (0 = off, the"
    " default: see the model card, 'Long answers'). --voices, --low or --high turn it off."
)
MEMORY_HELP = (
    "Weight of the piece's own memory: answer from what followed this context earlier in the seed and"
    " answer; 0.95 is the weight chosen on validation (0 = off: the network alone)."
)


def _steering(seed, voices: int, low: str | None, high: str | None, max_poly: int):
    """The --voices/--low/--high steering: what is not given follows the seed (None: all of it)."""
    from midiseed.runtime.codec import CodecError, parse_note_name
    from midiseed.runtime.sampling import Steering

    if not voices and low is None and high is None:
        return None
    bounds = {}
    for name, text in (("low", low), ("high", high)):
        if text is not None:
            try:
                bounds[name] = parse_note_name(text)
            except CodecError as err:
                raise BadValue(f"--{name}: {err}") from err
    followed = Steering.follow(seed, max_poly)
    lo = bounds.get("low", followed.low if "high" not in bounds else min(followed.low, bounds["high"]))
    hi = bounds.get("high", max(followed.high, lo))
    return followed.overridden(voices or followed.voices, lo, hi)


@app.command()
@user_errors
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
    loop_guard: Annotated[
        int,
        typer.Option(
            min=0,
            max=64,
            help="No pattern of up to this many events plays more than 1.5 times in a row, unless"
            " the seed did (0 = off).",
        ),
    ] = 32,
    memory: Annotated[float, typer.Option(min=0, max=0.99, help=MEMORY_HELP)] = 0.0,
    pitch_guard: Annotated[bool, typer.Option(help=PITCH_GUARD_HELP)] = False,
    anchor: Annotated[int, typer.Option(min=0, max=1024, help=ANCHOR_HELP)] = 0,
    bpm: Annotated[float, typer.Option(min=20, max=400)] = 120.0,
    png: Annotated[Path | None, typer.Option(help="Also draw a piano roll of seed and continuation.")] = None,
    wav: Annotated[
        Path | None, typer.Option(help="Also render the result to a WAV file through FluidSynth.")
    ] = None,
    soundfont: Annotated[
        Path | None, typer.Option(help="The .sf2 for --wav (default: the first in /usr/share/sounds/sf2).")
    ] = None,
    random_seed: Annotated[int, typer.Option(help="For sampling.")] = 0,
    voices: Annotated[
        int, typer.Option(min=0, max=127, help="Most notes sounding at once (0 = follow the seed).")
    ] = 0,
    low: Annotated[
        str | None, typer.Option(help="Lowest pitch, e.g. C3 or 48 (default: follow the seed).")
    ] = None,
    high: Annotated[str | None, typer.Option(help="Highest pitch, e.g. C6 or 84 (default: follow).")] = None,
) -> None:
    """Continue a seed offline: the seed is read in one call, then one model step per token."""
    setup_logging()
    if (seed_file is None) == (seed_notes is None):
        raise typer.BadParameter("give exactly one of --seed-file and --seed-notes", param_hint="--seed-file")
    # output paths, optional programs and packages are checked before anything is written
    for path, option in ((out, "--out"), (png, "--png"), (wav, "--wav")):
        if path is not None:
            output_file(path, option)
    renderer = None
    if png is not None:
        from midiseed.evaluate.pianoroll import require

        require()
    if wav is not None:
        from midiseed.runtime.sound import find_renderer

        renderer = find_renderer(soundfont)
    from midiseed.runtime.codec import events_to_notes, notes_to_events
    from midiseed.runtime.engine import Engine
    from midiseed.runtime.generate import Generator, parse_seed_notes
    from midiseed.runtime.midifile import MidiReadError, read_notes, write_notes

    engine = Engine(model)
    grid = engine.codec.grid
    if seed_file is not None:
        from midiseed.training.corpus import Limits, bound_notes

        try:  # bounded as the tokeniser bounds a file: a note of years lasts 64 beats
            notes, cuts = bound_notes(read_notes(seed_file, grid), grid, Limits())
        except MidiReadError as err:
            raise MidiReadError(f"--seed-file {seed_file}: {err}") from None
        for cut in cuts:
            typer.echo(f"--seed-file {seed_file}: {cut}", err=True)
        seed = notes_to_events(notes, grid)
        if not seed:
            raise BadValue(f"seed file {seed_file} has no pitched notes")
    else:
        seed = parse_seed_notes(seed_notes or "", grid.steps_per_beat)
    if len(seed) > MAX_SEED_EVENTS:
        raise BadValue(
            f"the seed is {len(seed):,} events long; at most {MAX_SEED_EVENTS:,} (give a shorter one)"
        )
    steering = _steering(seed, voices, low, high, grid.max_poly)
    gen = Generator(
        engine,
        _decoding(temperature, top_k, no_repeat, loop_guard, memory, pitch_guard, anchor),
        seed=random_seed,
        steering=steering,
    )
    gen.prime(seed)
    continuation = gen.generate(steps)
    notes = events_to_notes(seed + continuation)
    write_notes(notes, out, grid, bpm=bpm)
    seed_steps = sum(ev.steps for ev in seed)
    if png is not None:
        from midiseed.evaluate.pianoroll import draw

        draw(notes, seed_steps, grid, png)
    beats = sum(ev.steps for ev in continuation) / grid.steps_per_beat
    typer.echo(
        f"wrote {out}: {len(seed)} seed events + {steps} generated ({beats:g} beats) with {engine.path.name}"
    )
    if renderer is not None and wav is not None:
        renderer.render(out, wav)
        typer.echo(f"wrote {wav} through FluidSynth with {renderer.soundfont}")


@app.command()
@user_errors
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
    split: Annotated[
        str | None,
        typer.Option(
            help="test, validation (for decisions) or held-out (not in train); default: test if recorded."
        ),
    ] = None,
    follow_seeds: Annotated[
        int, typer.Option(min=0, help="Seeds a collection for the 'follows the seed' table (0 = no table).")
    ] = 50,
    follow_per_piece: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Seeds a piece may give to a collection with fewer pieces than --follow-seeds"
            " (1 = one seed a piece, from its start).",
        ),
    ] = 1,
    memory: Annotated[
        float,
        typer.Option(min=0, max=0.99, help="Also score the network with the piece's memory (0 = no)."),
    ] = 0.95,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
) -> None:
    """Score a model on music it did not train on, beside n-gram baselines; measure loops, variety and
    how its answers follow their seeds, per collection (the first folder under --data)."""
    setup_logging()
    import json

    from midiseed.evaluate import evaluate as run_evaluation
    from midiseed.evaluate import format_report
    from midiseed.runtime.sampling import Decoding

    decodings = None
    if no_repeat:
        decodings = {"greedy": Decoding(), **{f"no_repeat_{n}": Decoding(no_repeat=n) for n in no_repeat}}
    if split not in (None, "test", "validation", "held-out"):
        raise BadValue(f"--split must be test, validation or held-out, got {split!r}")
    report = run_evaluation(
        model,
        data,
        seeds=seeds,
        steps=steps,
        decodings=decodings,
        max_period=loop_period,
        split=split,
        follow_seeds=follow_seeds,
        memory=memory,
        follow_per_piece=follow_per_piece,
    )
    typer.echo(json.dumps(report, indent=1) if as_json else format_report(report))
