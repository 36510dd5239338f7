"""Pieces of notes -> events -> tokens, in memory: for evaluation and small tools.

Training does not use this: it reads the token store's memmaps and transposes each window on the
fly (`windows`). This is the event-level path the store's tokens must agree with (the tests pin
that transposing the events and encoding them equals transposing the tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from midiseed.runtime.codec import Codec, Event, Grid, notes_to_events
from midiseed.training.windows import transposition_bounds


@dataclass
class TokenSet:
    """Token ids of several pieces laid end to end; `offsets[i]:offsets[i+1]` is piece i."""

    tokens: np.ndarray  # int32
    offsets: np.ndarray  # int64, len = pieces + 1

    @property
    def pieces(self) -> list[np.ndarray]:
        return [self.tokens[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]


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


def encode_pieces(codec: Codec, pieces: Sequence[Sequence[Event]]) -> TokenSet:
    """Encode pieces into one flat token array."""
    arrays = [codec.encode(p) for p in pieces]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    tokens = np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(0, dtype=np.int32)
    return TokenSet(tokens, offsets)


def transposition_range(spec: str) -> list[int]:
    """'-5..6' -> [-5, ..., 6]; '0' -> [0]."""
    lo, hi = transposition_bounds(spec)
    return list(range(lo, hi + 1))
