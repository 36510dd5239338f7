"""How generated music behaves: loops, variety, and pitch-class and duration histograms."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from midiseed.runtime.codec import Event
from midiseed.training.loops import MAX_LOOP_EVENTS

MAX_PERIOD = MAX_LOOP_EVENTS  # longest loop period, in events, that `looped_mask` looks for


def looped_mask(seq: Sequence[Hashable], max_period: int = MAX_PERIOD) -> np.ndarray:
    """Which positions of seq lie inside a loop.

    Position i is looped when, for some period p in 1..max_period, it lies in a stretch
    seq[a:b] with b - a >= 2p and seq[j] == seq[j + p] for every a <= j < b - p: the stretch is
    at least two full repetitions of a p-event pattern (``x a b a b y``: the ``a b a b`` is looped;
    ``a b c a b`` is not, its period-3 pattern does not repeat in full).
    """
    ids: dict[Hashable, int] = {}
    codes = np.array([ids.setdefault(x, len(ids)) for x in seq], dtype=np.int64)
    mask = np.zeros(len(codes), dtype=bool)
    for p in range(1, max_period + 1):
        if len(codes) <= p:
            break
        same = np.r_[False, codes[:-p] == codes[p:], False].astype(np.int8)
        edges = np.diff(same)
        for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            if e - s >= p:  # matches at j = s..e-1 make seq[s : e + p] p-periodic
                mask[s : e + p] = True
    return mask


def loop_share(seq: Sequence[Hashable], max_period: int = MAX_PERIOD) -> float:
    """Share of positions inside a loop (see `looped_mask`); 0.0 for an empty sequence."""
    return float(looped_mask(seq, max_period).mean()) if len(seq) else 0.0


def distinct_ngrams(seq: Sequence[Hashable], n: int = 4) -> float:
    """Distinct n-grams / all n-grams of seq; 0.0 when seq is shorter than n."""
    grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def histograms(events: Sequence[Event], max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of struck pitch classes (12) and of event durations 1..max_steps (rests included)."""
    pcs, durations = np.zeros(12), np.zeros(max_steps)
    for ev in events:
        for pitch, held in zip(ev.pitches, ev.held):
            if not held:
                pcs[pitch % 12] += 1
        durations[min(max(ev.steps, 1), max_steps) - 1] += 1
    return pcs, durations


def tv_distance(counts: np.ndarray, reference: np.ndarray) -> float:
    """Total-variation distance of two histograms (as shares); 1.0 when either is empty."""
    if counts.sum() == 0 or reference.sum() == 0:
        return 1.0
    return float(0.5 * np.abs(counts / counts.sum() - reference / reference.sum()).sum())


def behaviour(
    samples: Sequence[Sequence[Event]],
    reference: tuple[np.ndarray, np.ndarray],
    max_steps: int,
    max_period: int = MAX_PERIOD,
) -> dict:
    """Loop share, distinct 4-grams and histogram distances, each averaged over samples; pooled histograms."""
    rows, pcs, durations = [], np.zeros(12), np.zeros(max_steps)
    for events in samples:
        pc, dur = histograms(events, max_steps)
        pcs, durations = pcs + pc, durations + dur
        tvs = [tv_distance(pc, reference[0]), tv_distance(dur, reference[1])]
        rows.append([loop_share(events, max_period), distinct_ngrams(events, 4), *tvs])
    means = np.mean(rows, axis=0).tolist() if rows else [None] * 4  # None: no piece was long enough
    return {
        "samples": len(rows),
        **dict(zip(["loop_share", "distinct_4grams", "pitch_class_tv", "duration_tv"], means)),
        "pitch_class_hist": [round(float(x), 4) for x in pcs / max(pcs.sum(), 1)],
        "duration_hist": [round(float(x), 4) for x in durations / max(durations.sum(), 1)],
    }
