"""Tried as a new user would: five seeds in five styles through `midiseed generate`, answers vs seeds.

Issue 11 is done when "tried as a new user would with a folk tune, a pop riff, a chord progression, a
chorale phrase and a blues lick, each answer keeps the seed's texture, note rate and key". This writes
those five seeds as MIDI files, runs the real CLI on each (`python -m midiseed generate`, with its
default decoding and steering: only the seed, the model, the output and an answer as many events long
as the seed), reads both back through the project's reader and codec, and compares them with the
measures of `midiseed evaluate`'s "follows the seed" table (`midiseed.evaluate.follow.compare`).

A seed keeps its texture, note rate and key when texture x <= 1.3, rhythm x <= 1.3 and in key >= 0.9
(the issue's goals), and the answer strikes at least 3 distinct pitches (or as many as the seed):
one note repeated keeps all three measures, and no musician would call it keeping the tune. It is a
measurement, not a test: the exit status is 0 whatever the verdicts.

    python -m midiseed.bench.newuser [--model PATH_OR_NAME] [--out DIR] [--json] [--live]

`--live` tries `continue` mode instead: each seed played note by note, at its tempo, into the
daemon's own Performer (made-up time, the real model, the served decoding), and the first 64 events
it streams after the last note measured the same way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from midiseed.evaluate.follow import compare, median_gap, notes_per_onset
from midiseed.evaluate.keys import find_key
from midiseed.runtime.codec import Event, Grid, events_to_notes, notes_to_events
from midiseed.runtime.generate import parse_seed_notes
from midiseed.runtime.midifile import read_notes, write_notes

TEXTURE_GOAL = 1.3  # answer/seed notes per onset, either way
RHYTHM_GOAL = 1.3  # answer/seed median gap between onsets, either way
IN_KEY_GOAL = 0.9  # share of the answer's note time on the seed key's scale
VARIETY_GOAL = 3  # distinct pitches struck: at least this many (or as many as the seed strikes)
SEED_GRID = Grid()  # the seeds are written on sixteenths; 480 ticks a beat is 120 ticks a step

# (file stem, bpm, notes in `--seed-notes` notation: one word per onset, "+" joins a chord, ":n" beats)
SEEDS: list[tuple[str, float, str]] = [
    # a reel in D major: running eighths, one voice, four bars
    (
        "folk_tune",
        100,
        "A4:.5 D5:.5 F#5:.5 D5:.5 A4:.5 D5:.5 F#5:.5 A5:.5 B5:.5 A5:.5 F#5:.5 D5:.5 E5:.5 F#5:.5 G5:.5"
        " E5:.5 F#5:.5 D5:.5 A4:.5 D5:.5 F#5:.5 A5:.5 D6:.5 A5:.5 B5:.5 G5:.5 E5:.5 C#5:.5 D5:.5 F#5:.5"
        " D5:1",
    ),
    # an A-minor riff, syncopated on the "and" of two (dotted eighths, eighths, sixteenths), four bars
    (
        "pop_riff",
        104,
        "A4:.75 C5:.75 E5:.5 D5:.5 C5:.25 D5:.25 E5:.5 r:.5 G4:.75 A4:.75 C5:.5 B4:.5 A4:.25 G4:.25 A4:1"
        " A4:.75 C5:.75 E5:.5 D5:.5 C5:.25 D5:.25 E5:.5 r:.5 G4:.75 A4:.75 C5:.5 E5:.5 D5:.25 C5:.25"
        " A4:1",
    ),
    # I-vi-IV-V twice in C major, bass under a close triad, a chord every half note
    (
        "chord_progression",
        96,
        "C3+G3+C4+E4:2 A2+A3+C4+E4:2 F2+A3+C4+F4:2 G2+B3+D4+G4:2"
        " C3+G3+C4+E4:2 A2+A3+C4+E4:2 F2+A3+C4+F4:2 G2+B3+D4+F4:2",
    ),
    # SATB in G major, quarter notes (bass+tenor+alto+soprano), ending ii6 - V7 - I
    (
        "chorale_phrase",
        80,
        "G3+D4+G4+B4 F#3+D4+F#4+A4 E3+B3+E4+G4 D3+A3+F#4+A4"
        " G3+D4+G4+B4 C3+E4+G4+C5 B2+D4+G4+D5 D3+A3+F#4+D5"
        " C3+C4+G4+E5 B2+D4+G4+D5 A2+A3+E4+C5 D3+D4+G4+B4"
        " C3+C4+E4+A4 D3+C4+F#4+A4 G2+B3+D4+G4:2",
    ),
    # a blues lick in A: minor pentatonic plus the blue note Eb, swung eighths (dotted eighth +
    # sixteenth, as the grid writes a swing), two bars ending on a held tonic
    (
        "blues_lick",
        88,
        "A5:.75 G5:.25 E5:.75 Eb5:.25 D5:.75 C5:.25 A4:.5 C5:.5 D5:.75 Eb5:.25 E5:.75 C5:.25 A4:2",
    ),
]


def write_seeds(out: Path) -> dict[str, Path]:
    """The five seeds as one-track MIDI files (480 ticks a beat, each at its own tempo) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, bpm, text in SEEDS:
        path = out / f"{name}.mid"
        notes = events_to_notes(parse_seed_notes(text, SEED_GRID.steps_per_beat))
        write_notes(notes, path, SEED_GRID, bpm=bpm, ticks_per_beat=480)
        paths[name] = path
    return paths


def read_events(path: Path, grid: Grid) -> list[Event]:
    """A MIDI file as events, read exactly as `midiseed generate` reads a seed file."""
    return notes_to_events(read_notes(path, grid), grid)


def answer_part(whole: list[Event], seed_steps: int) -> list[Event]:
    """The events of seed + answer from step `seed_steps` on: the answer. An event that straddles
    that step (a seed note the answer holds on) is cut there, its second part held."""
    out, t = [], 0
    for ev in whole:
        if t >= seed_steps:
            out.append(ev)
        elif t + ev.steps > seed_steps:
            out.append(Event(ev.pitches, (True,) * len(ev.pitches), t + ev.steps - seed_steps))
        t += ev.steps
    return out


def generate(seed: Path, out: Path, steps: int, model: str | None, options: Sequence[str] = ()) -> None:
    """Run `midiseed generate` on a seed file as a user would (with any further `options`); a
    failure ends the run with its message."""
    cmd = [sys.executable, "-m", "midiseed", "generate", "--seed-file", str(seed), "--out", str(out)]
    cmd += ["--steps", str(steps)] + (["--model", model] if model else []) + list(options)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")


def measure(seed: Path, answer_file: Path, grid: Grid) -> dict:
    """One row: the seed's and the answer's texture and note rate, the factors, key and verdict."""
    seed_ev = read_events(seed, grid)
    answer = answer_part(read_events(answer_file, grid), sum(ev.steps for ev in seed_ev))
    return {
        **judge(seed_ev, answer, grid),
        "seed": seed.stem,
        "seed_file": str(seed),
        "answer_file": str(answer_file),
    }


def judge(seed_ev: list[Event], answer: list[Event], grid: Grid) -> dict:
    """The measures and verdict of one answer to one seed (events on `grid`)."""
    row = compare(seed_ev, answer)
    gap_seed, gap_answer = median_gap(seed_ev), median_gap(answer)
    key = find_key(seed_ev)
    seed_pitches, answer_pitches = struck_pitches(seed_ev), struck_pitches(answer)
    fails = [
        name
        for name, ok in (
            ("texture", row["texture"] is not None and row["texture"] <= TEXTURE_GOAL),
            ("rhythm", row["rhythm"] is not None and row["rhythm"] <= RHYTHM_GOAL),
            ("key", row["in_key"] is not None and row["in_key"] >= IN_KEY_GOAL),
            # the three measures cannot see a monotone answer: one pitch repeated keeps them all
            ("variety", answer_pitches >= min(seed_pitches, VARIETY_GOAL)),
        )
        if not ok
    ]
    return {
        "seed_events": len(seed_ev),
        "answer_events": len(answer),
        "seed_notes_per_onset": notes_per_onset(seed_ev),
        "answer_notes_per_onset": notes_per_onset(answer),
        "texture": row["texture"],
        "seed_median_ioi_beats": None if gap_seed is None else gap_seed / grid.steps_per_beat,
        "answer_median_ioi_beats": None if gap_answer is None else gap_answer / grid.steps_per_beat,
        "rhythm": row["rhythm"],
        "seed_key": None if key is None else str(key),
        "in_key": row["in_key"],
        "shift": row["shift"],
        "seed_pitches": seed_pitches,
        "answer_pitches": answer_pitches,
        "verdict": "keeps" if not fails else "fails " + ", ".join(fails),
    }


def struck_pitches(events) -> int:
    """How many distinct pitches the events strike (held continuations not counted)."""
    return len({p for ev in events for p, held in zip(ev.pitches, ev.held) if not held})


def run(out: Path, model: str | None = None, options: Sequence[str] = ()) -> list[dict]:
    """Write the seeds into `out`, answer each with `midiseed generate` (and `options`), and measure
    every answer."""
    from midiseed.runtime.engine import read_info

    grid = read_info(model).codec.grid  # read back on the model's own grid, as generate does
    rows = []
    for name, seed in write_seeds(out).items():
        answer = out / f"{name}.answer.mid"
        generate(seed, answer, len(read_events(seed, grid)), model, options)
        rows.append(measure(seed, answer, grid))
    return rows


def play_live(model: str | None, seed_ev: list[Event], bpm: float, events: int = 64) -> list[Event]:
    """`continue` mode as a player meets it (`midiseed.bench.stream.stream_live`): the seed played
    note by note at `bpm` into the daemon's Performer, with the model and the decoding `serve` uses;
    the first `events` events it streams from the last chord read on."""
    from dataclasses import replace

    from midiseed.bench.stream import stream_live
    from midiseed.daemon.config import Config
    from midiseed.daemon.service import Service

    gen = Service._generator(replace(Config(), model=model or "", mode="continue", realtime=False))
    return stream_live(gen, seed_ev, events, bpm)


def run_live(model: str | None = None) -> list[dict]:
    """Each seed played live into `continue` mode (`play_live`), its stream measured as an answer."""
    from midiseed.runtime.engine import read_info

    grid = read_info(model).codec.grid
    rows = []
    for name, bpm, text in SEEDS:
        seed_ev = parse_seed_notes(text, grid.steps_per_beat)
        rows.append({"seed": name, **judge(seed_ev, play_live(model, seed_ev, bpm), grid)})
    return rows


def format_table(rows: list[dict]) -> str:
    """The markdown table, one row per seed."""
    lines = [
        "| seed | seed notes/onset | answer notes/onset | texture × | seed median IOI (beats) | answer"
        " median IOI | rhythm × | seed key | in key | pitches (seed → answer) | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        cells = [
            r["seed"],
            _fmt(r["seed_notes_per_onset"], ".2f"),
            _fmt(r["answer_notes_per_onset"], ".2f"),
            _fmt(r["texture"], ".2f"),
            _fmt(r["seed_median_ioi_beats"], ".2f"),
            _fmt(r["answer_median_ioi_beats"], ".2f"),
            _fmt(r["rhythm"], ".2f"),
            r["seed_key"] or "–",
            _fmt(r["in_key"], ".2f"),
            f"{r['seed_pitches']} → {r['answer_pitches']}",
            r["verdict"],
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    """`python -m midiseed.bench.newuser`: print the table (or the rows as JSON); always exit 0."""
    ap = argparse.ArgumentParser(prog="python -m midiseed.bench.newuser", description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="ONNX model path or shipped name (default: the shipped default)")
    ap.add_argument("--out", type=Path, help="folder for the seeds and answers (default: a new temp folder)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    ap.add_argument(
        "--generate",
        action="append",
        default=[],
        metavar="OPTION",
        help="an option passed on to midiseed generate, e.g. --generate=--pitch-guard (repeatable)",
    )
    ap.add_argument(
        "--live",
        action="store_true",
        help="play each seed note by note into continue mode (the daemon's Performer, made-up time) and"
        " measure the first 64 events it streams after the last note, instead of midiseed generate",
    )
    args = ap.parse_args(argv)
    if args.live and (args.generate or args.out):
        ap.error("--live plays into the daemon's Performer: it takes no --generate and writes no --out")
    if args.live:
        rows = run_live(args.model)
        where = f"Seeds played live into continue mode (model: {args.model or 'shipped default'}).\n"
    else:
        out = args.out or Path(tempfile.mkdtemp(prefix="midiseed-newuser-"))
        rows = run(out, args.model, args.generate)
        where = f"Seeds and answers in {out} (model: {args.model or 'shipped default'}"
        where += f"; generate {' '.join(args.generate)}).\n" if args.generate else ").\n"
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(where)
        print(format_table(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
