"""Krumhansl-Schmuckler key-finding, in numpy, with the Krumhansl-Kessler (1982) key profiles.

The key of a passage is the major or minor key whose profile, rotated to its tonic, correlates best
(Pearson) with the passage's pitch-class durations. Durations, not note counts: a held whole note
weighs more than a passing sixteenth, as in Krumhansl's own use of the algorithm.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from midiseed.runtime.codec import Event

# Krumhansl & Kessler (1982) probe-tone ratings, from the tonic up by semitone
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
# natural minor plus the leading tone: harmonic minor's raised 7th is how minor-key music cadences
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# every key's profile as a row: rows 0..11 major keys on C..B, rows 12..23 minor keys
_PROFILES = np.array(
    [np.roll(MAJOR_PROFILE, t) for t in range(12)] + [np.roll(MINOR_PROFILE, t) for t in range(12)]
)


class Key(NamedTuple):
    """A key: its tonic's pitch class (0 = C) and its mode."""

    tonic: int
    minor: bool

    def __str__(self) -> str:
        return f"{NAMES[self.tonic]} {'minor' if self.minor else 'major'}"

    def scale(self) -> np.ndarray:
        """Boolean mask over the 12 pitch classes: the key's scale (minor: natural + leading tone)."""
        mask = np.zeros(12, dtype=bool)
        mask[[(self.tonic + d) % 12 for d in (MINOR_SCALE if self.minor else MAJOR_SCALE)]] = True
        return mask


def pitch_class_time(events: Iterable[Event]) -> np.ndarray:
    """Grid steps each of the 12 pitch classes sounds for, struck or held, summed over voices."""
    time = np.zeros(12)
    for ev in events:
        for p in ev.pitches:
            time[p % 12] += ev.steps
    return time


def key_correlations(pc_time: np.ndarray) -> np.ndarray:
    """Pearson correlation of a pitch-class distribution with the 24 key profiles (major C..B, minor C..B)."""
    x = np.asarray(pc_time, dtype=np.float64)
    xc = x - x.mean()
    pc = _PROFILES - _PROFILES.mean(axis=1, keepdims=True)
    denom = np.linalg.norm(pc, axis=1) * np.linalg.norm(xc)
    return (pc @ xc) / denom if denom.all() else np.zeros(24)


def find_key(events: Iterable[Event]) -> Key | None:
    """The Krumhansl-Schmuckler key of the events; None when they sound no pitch, or only one
    pitch class evenly with every other (nothing to correlate)."""
    pc_time = pitch_class_time(events)
    if not pc_time.any() or np.all(pc_time == pc_time[0]):
        return None
    best = int(np.argmax(key_correlations(pc_time)))
    return Key(best % 12, best >= 12)


def in_key_share(events: Iterable[Event], key: Key) -> float | None:
    """Share of the events' note time (pitch x steps) on the key's scale; None when no note sounds."""
    pc_time = pitch_class_time(events)
    total = pc_time.sum()
    return float(pc_time[key.scale()].sum() / total) if total else None
