"""What tokenising a MIDI folder into a token store costs (the ``data`` section), projected to Lakh.

    python -m midiseed.bench.data MIDI_DIR [--quick] [--json]   # this section alone

Measured on a folder of Lakh-like files (`python -m midiseed.bench.lakh DIR --files 2000`):
`midiseed data tokenize` in a child process (wall time, CPU of it and its workers, peak RSS of
each), a second run with nothing changed (the incremental path), the tokeniser alone before and
after vectorising (the Python event path against `notes_to_tokens`, CPU per file), and music21's
parser on a few of the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from midiseed.bench.stats import Skip, _round

LAKH_FILES = 176_581  # files in the Lakh MIDI dataset (LMD-full)
MUSIC21_RATIO_GOAL = 100.0
LAKH_GOAL_MINUTES = 30.0
RSS_GOAL_MB = 2048.0


def _child(midi_dir: str, store: str, workers: int) -> None:
    """In the child process: tokenize, then print the report, CPU and peak RSS as JSON."""
    from dataclasses import asdict

    from midiseed.training.store import tokenize

    t0 = time.perf_counter()
    report = tokenize(Path(midi_dir), Path(store), workers=workers)
    wall = time.perf_counter() - t0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "report": asdict(report),
                "wall_s": wall,
                "cpu_main_s": me.ru_utime + me.ru_stime,
                "cpu_workers_s": kids.ru_utime + kids.ru_stime,
                "rss_main_mb": me.ru_maxrss / 1024,
                "rss_worker_mb": kids.ru_maxrss / 1024,
            }
        )
    )


def run_tokenize(midi_dir: Path, store: Path, workers: int) -> dict[str, Any]:
    """`tokenize` in a fresh process (so its peak RSS is its own), with its figures."""
    code = f"from midiseed.bench.data import _child; _child({str(midi_dir)!r}, {str(store)!r}, {workers})"
    cmd = [sys.executable, "-c", code]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tokenize child failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tokeniser_cpu(files: list[Path], grid) -> dict[str, float]:
    """CPU ms per file of the event path (notes_to_events + encode) and of notes_to_tokens."""
    from midiseed.runtime.codec import Codec, notes_to_events, notes_to_tokens
    from midiseed.runtime.midifile import MidiReadError, read_notes

    codec = Codec(grid)
    pieces = []
    for path in files:
        try:
            pieces.append(read_notes(path, grid))
        except MidiReadError:
            continue
    t0 = time.process_time()
    for notes in pieces:
        codec.encode(notes_to_events(notes, grid))
    events = time.process_time() - t0
    t0 = time.process_time()
    for notes in pieces:
        notes_to_tokens(notes, codec)
    vector = time.process_time() - t0
    n = max(1, len(pieces))
    return {"files": len(pieces), "event_path_ms": events / n * 1000, "vectorised_ms": vector / n * 1000}


def bench_data(model: Path | None, data_dir: Path, quick: bool) -> dict[str, Any]:
    """Tokenise a MIDI folder into a store on all cores (then again, unchanged), the tokeniser
    before/after, and music21's parser on a few files; projected to Lakh's 176,581 files."""
    from midiseed.runtime.codec import Grid
    from midiseed.training.corpus import find_midi_files

    files = find_midi_files(data_dir)
    if not files:
        raise Skip(f"{data_dir} has no MIDI files")
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="midiseed-bench-store-") as tmp:
        first = run_tokenize(data_dir, Path(tmp) / "store", cores)
        again = run_tokenize(data_dir, Path(tmp) / "store", cores)
    rep = first["report"]
    n = rep["files"]
    rate = n / first["wall_s"]
    cpu_file = (first["cpu_main_s"] + first["cpu_workers_s"]) / n
    lakh_min = LAKH_FILES / rate / 60
    lakh_idle_min = LAKH_FILES * cpu_file / cores / 60
    rss = max(first["rss_main_mb"], first["rss_worker_mb"])
    tok = tokeniser_cpu(files[: 50 if quick else 200], Grid())
    out: dict[str, Any] = {
        "files": n,
        "stored": n - rep["skipped"],
        "skipped": rep["skipped"],
        "cut": rep["cut"],
        "tokens": rep["tokens"],
        "cores": cores,
        "files_per_s": _round(rate),
        "tokens_per_s": _round(rep["tokens"] / first["wall_s"]),
        "cpu_ms_per_file": _round(cpu_file * 1000),
        "cpu_main_ms_per_file": _round(first["cpu_main_s"] / n * 1000),
        "rss_main_mb": _round(first["rss_main_mb"]),
        "rss_worker_mb": _round(first["rss_worker_mb"]),
        "unchanged_rerun_s": _round(again["wall_s"]),
        "lakh_minutes": _round(lakh_min),
        "lakh_minutes_idle_cpus": _round(lakh_idle_min),
        "event_path_ms_per_file": _round(tok["event_path_ms"]),
        "vectorised_ms_per_file": _round(tok["vectorised_ms"]),
    }
    how = (
        f"`midiseed data tokenize` ({cores} workers) in a child process into a fresh store, then again "
        "with nothing changed; CPU = user+sys of it and its workers; RSS = peak of the main process and "
        f"of the largest worker; Lakh = {LAKH_FILES} files at the measured files/s (the machine as it "
        f"was) and at the CPU per file on {cores} idle cores; tokeniser alone: CPU per file of "
        f"notes_to_events + encode vs notes_to_tokens on {tok['files']} files"
    )
    summary = (
        f"{n} files ({rep['skipped']} skipped, {rep['cut']} cut): {rate:.0f} files/s, "
        f"{rep['tokens'] / first['wall_s'] / 1e6:.2f} M tokens/s, {cpu_file * 1000:.1f} ms CPU a file; "
        f"peak RSS {first['rss_main_mb']:.0f} MB main, {first['rss_worker_mb']:.0f} MB a worker; "
        f"unchanged re-run {again['wall_s']:.1f} s; Lakh in {lakh_min:.1f} min at this rate, "
        f"{lakh_idle_min:.1f} min on {cores} idle cores; tokeniser {tok['event_path_ms']:.1f} -> "
        f"{tok['vectorised_ms']:.1f} ms CPU a file"
    )
    met = lakh_min <= LAKH_GOAL_MINUTES and rss <= RSS_GOAL_MB
    try:
        from music21 import converter
    except ImportError:
        out["music21"] = "not installed"
        how += "; music21 not installed"
    else:
        m21 = []
        for path in files[: 2 if quick else 5]:
            t0 = time.process_time()
            converter.parse(str(path), forceSource=True, storePickle=False)  # parse, not its pickle cache
            m21.append(time.process_time() - t0)
        m21_file = sorted(m21)[len(m21) // 2]
        ratio = m21_file / cpu_file
        out.update(music21_ms_per_file=_round(m21_file * 1000), ratio_vs_music21=_round(ratio, 3))
        met = met and ratio >= MUSIC21_RATIO_GOAL
        how += f"; music21: converter.parse (forceSource, no pickle) CPU on {len(m21)} files, median"
        summary += f"; music21 {m21_file * 1000:.0f} ms CPU a file = {ratio:.0f}x ours"
    out.update(
        how=how,
        summary=summary,
        met=met,
        goal=f"Lakh <= {LAKH_GOAL_MINUTES:g} min on {cores} cores, peak RSS <= {RSS_GOAL_MB:g} MB, "
        f">= {MUSIC21_RATIO_GOAL:g}x music21",
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m midiseed.bench.data", description=__doc__.splitlines()[0])
    ap.add_argument("midi_dir", type=Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true", help="the section as JSON instead of a table row")
    args = ap.parse_args(argv)
    section = bench_data(None, args.midi_dir, args.quick)
    if args.json:
        print(json.dumps(section, indent=1))
    else:
        print(f"| data | {section['how']} | {section['summary']} | {section['goal']} | "
              f"{'yes' if section['met'] else 'no'} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
