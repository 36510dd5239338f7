"""Pieces of notes -> one flat token array and the windows a model trains on.

The seed project materialised a (windows x seq_len) matrix; here a window is only its start
offset into one flat int32 array, and a batch is sliced out when it is asked for, so memory is
O(total tokens) whatever seq_len is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from midiseed.errors import BadValue
from midiseed.runtime.codec import Codec, Event, Grid, notes_to_events


@dataclass
class TokenSet:
    """Token ids of several pieces laid end to end; `offsets[i]:offsets[i+1]` is piece i."""

    tokens: np.ndarray  # int32
    offsets: np.ndarray  # int64, len = pieces + 1

    def window_starts(self, seq_len: int, stride: int) -> np.ndarray:
        """Start of every window of seq_len + 1 tokens (input + shifted target) inside one piece."""
        starts = [
            np.arange(a, b - seq_len, stride, dtype=np.int64)
            for a, b in zip(self.offsets[:-1], self.offsets[1:])
            if b - a > seq_len
        ]
        return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)

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
    try:
        if ".." in spec:
            lo, hi = (int(x) for x in spec.split(".."))
        else:
            lo = hi = int(spec)
    except ValueError as err:
        raise BadValue(f"transpose must look like -5..6 or 0, got {spec!r}") from err
    if lo > hi or lo < -24 or hi > 24:
        raise BadValue(f"transpose range must lie within -24..24 and be ordered, got {spec!r}")
    return list(range(lo, hi + 1))


def batch(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-token targets for the windows starting at `starts`."""
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    win = tokens[idx]
    return win[:, :-1], win[:, 1:]
