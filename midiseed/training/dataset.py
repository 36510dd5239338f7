"""Pieces of notes -> events -> tokens, in memory: for evaluation and small tools.

Training does not use this: it reads windows from the token store's shards and transposes each on
the fly (`windows`). This is the event-level path the store's tokens must agree with (the tests pin
that transposing the events and encoding them equals transposing the tokens).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from midiseed.runtime.codec import Event, Grid, notes_to_events
from midiseed.training.windows import transposition_bounds


def piece_events(
    notes: Sequence[np.ndarray], grid: Grid, transpositions: Sequence[int] = (0,)
) -> list[list[Event]]:
    """Events of each piece under each transposition that keeps every pitch in 0..127."""
    out = []
    for arr in notes:
        events = notes_to_events(arr, grid)
        for k in transpositions:
            moved = [ev.transposed(k) for ev in events]
            if all(ev is not None for ev in moved):
                out.append(moved)
    return out


def transposition_range(spec: str) -> list[int]:
    """'-5..6' -> [-5, ..., 6]; '0' -> [0]."""
    lo, hi = transposition_bounds(spec)
    return list(range(lo, hi + 1))
