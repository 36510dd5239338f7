"""What reading and tokenising a MIDI folder costs (the ``data`` section), against music21 and Lakh."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from midiseed.bench.stats import Skip, _round

LAKH_FILES = 176_581  # files in the Lakh MIDI dataset (LMD-full)
MUSIC21_RATIO_GOAL = 100.0
LAKH_GOAL_MINUTES = 30.0


# ---- 5. data -------------------------------------------------------------------------------------


def bench_data(model: Path, data_dir: Path, quick: bool) -> dict[str, Any]:
    """Read + tokenise a MIDI folder on one core and on all, and music21's parser on a few files."""
    from midiseed.runtime.engine import read_info
    from midiseed.training.corpus import find_midi_files, load_corpus
    from midiseed.training.dataset import encode_pieces, piece_events

    codec = read_info(model).codec
    grid = codec.grid
    files = find_midi_files(data_dir)
    if not files:
        raise Skip(f"{data_dir} has no MIDI files")
    cores = os.cpu_count() or 1
    repeats = 1 if quick else 3
    read_one, read_all, tokenise = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        corpus = load_corpus(data_dir, grid, workers=1, use_cache=False)
        read_one.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        load_corpus(data_dir, grid, workers=cores, use_cache=False)
        read_all.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tokens = encode_pieces(codec, piece_events(corpus.notes, grid))
        tokenise.append(time.perf_counter() - t0)
    n = len(files)
    t_one = float(np.median(read_one)) + float(np.median(tokenise))
    t_all = float(np.median(read_all)) + float(np.median(tokenise))
    rate_one, rate_all = n / t_one, n / t_all
    n_tokens = int(tokens.tokens.size)
    held = tokens.tokens.nbytes + tokens.offsets.nbytes + sum(a.nbytes for a in corpus.notes)
    lakh_min = LAKH_FILES / rate_all / 60
    out: dict[str, Any] = {
        "files": n,
        "files_read": len(corpus.files),
        "files_per_s_1_worker": _round(rate_one),
        "files_per_s_all_cores": _round(rate_all),
        "cores": cores,
        "tokenise_s": _round(float(np.median(tokenise))),
        "tokens": n_tokens,
        "mb_per_million_tokens": _round(held / 1e6 / (n_tokens / 1e6)) if n_tokens else None,
        "lakh_minutes": _round(lakh_min),
    }
    how = (
        f"load_corpus (use_cache=False) with workers=1 and workers={cores}, plus notes_to_events + "
        f"codec.encode in this process; median of {repeats}; memory = tokens + offsets + notes arrays; "
        f"Lakh = {LAKH_FILES} files at the all-cores rate"
    )
    summary = (
        f"{n} files: {rate_one:.0f} files/s (1 worker), {rate_all:.0f} files/s ({cores} workers); "
        f"{n_tokens} tokens, {out['mb_per_million_tokens']} MB per million tokens; Lakh in {lakh_min:.1f} min"
    )
    try:
        from music21 import converter
    except ImportError:
        out["music21"] = "not installed"
        out["met"] = lakh_min <= LAKH_GOAL_MINUTES
        how += "; music21 not installed"
    else:
        m21 = []
        for path in files[:5]:
            t0 = time.perf_counter()
            converter.parse(str(path), forceSource=True, storePickle=False)  # parse, not its pickle cache
            m21.append(time.perf_counter() - t0)
        m21_file = float(np.median(m21))
        ratio = m21_file * rate_one
        out.update(
            music21_ms_per_file=_round(m21_file * 1000),
            ours_ms_per_file_1_worker=_round(1000 / rate_one),
            ratio_vs_music21=_round(ratio, 3),
            music21_lakh_hours_all_cores=_round(LAKH_FILES * m21_file / cores / 3600),
        )
        out["met"] = ratio >= MUSIC21_RATIO_GOAL and lakh_min <= LAKH_GOAL_MINUTES
        how += (
            f"; music21: converter.parse (forceSource, no pickle) on {len(m21)} files, median, vs our "
            "read+tokenise per file on one worker"
        )
        summary += (
            f"; music21 {m21_file * 1000:.0f} ms/file vs ours {1000 / rate_one:.2f} ms/file = {ratio:.0f}x "
            f"(music21 on Lakh: {out['music21_lakh_hours_all_cores']} h on {cores} cores)"
        )
    out.update(
        how=how,
        summary=summary,
        goal=f">= {MUSIC21_RATIO_GOAL:g}x music21, Lakh <= {LAKH_GOAL_MINUTES:g} min",
    )
    return out
