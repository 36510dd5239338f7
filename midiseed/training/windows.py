"""Training windows read from the token store's shard files, transposed on the fly.

Nothing here copies the corpus: `Pieces` is a table of (shard, offset, length) per file, a window
is a number, and a batch reads only its own B x (seq_len + 1) tokens from the shard files
(`ShardFile`). Memory is O(files) for the table, whatever the number of tokens (the OS page
cache aside).

- Window w of the corpus is found by a binary search over the files' cumulative window counts;
  windows never cross a file's end.
- Training visits the windows in passes, each pass in its own pseudo-random order (a keyed
  Feistel permutation: no array of window numbers is ever built). Batch g holds windows
  g*B .. g*B+B-1 of that endless sequence, so any batch can be made again from its number alone:
  resuming, --steps-per-epoch and several workers need no saved position.
- Each training window is transposed by a shift drawn afresh for each batch number, uniformly
  from the shifts that keep all its pitches in 0..127, intersected with --transpose.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from midiseed.errors import BadValue
from midiseed.training.losses import pack

PITCH_IDS = 256  # ids 0..127 strike pitch p, 128..255 hold it: a shift by k adds k to both


class ShardFile:
    """One shard file of the store, read with pread: a window's tokens are copied into this
    process, and the shard's pages stay in the OS page cache. (Slicing the store's memmap works
    too, but every page it touches stays mapped, and with the kernel mapping the cached pages
    around each fault, the process's RSS grows to the whole store's size.)"""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_RDONLY)
        weakref.finalize(self, os.close, self.fd)

    def rows(self, starts: np.ndarray, length: int) -> np.ndarray:
        """(len(starts), length) uint16 tokens, row r from token starts[r] on."""
        out = np.empty((len(starts), length), dtype="<u2")
        for row, start in zip(out, starts.tolist()):
            if os.preadv(self.fd, [row], 2 * start) != 2 * length:
                raise OSError(f"{self.path} ends before token {start + length}")
        return out


def rows(shard, starts: np.ndarray, length: int) -> np.ndarray:
    """(len(starts), length) int32 tokens of a shard (a `ShardFile`, or an array in memory)."""
    if isinstance(shard, ShardFile):
        return shard.rows(starts, length).astype(np.int32)
    return np.asarray(shard[starts[:, None] + np.arange(length)[None, :]], dtype=np.int32)


@dataclass
class Pieces:
    """Token arrays of some files, read on demand from their shards."""

    shard_of: Callable[[int], object]  # shard number -> a `ShardFile`, or its tokens as an array
    shard: np.ndarray  # int32, per file
    offset: np.ndarray  # int64, per file: first token in its shard
    length: np.ndarray  # int64, per file: number of tokens
    names: list[str]  # per file: relative path

    def __len__(self) -> int:
        return len(self.names)

    def tokens(self, i: int) -> np.ndarray:
        """File i's tokens as int32 (a copy of that one file)."""
        return rows(self.shard_of(int(self.shard[i])), self.offset[i : i + 1], int(self.length[i]))[0]

    @property
    def total_tokens(self) -> int:
        return int(self.length.sum())

    def subset(self, keep: Sequence[int] | np.ndarray) -> Pieces:
        keep = np.asarray(keep, dtype=np.int64)
        return Pieces(
            self.shard_of,
            self.shard[keep],
            self.offset[keep],
            self.length[keep],
            [self.names[i] for i in keep],
        )

    @classmethod
    def from_store(cls, store, names: Sequence[str] | None = None) -> Pieces:
        """The files of a `TokenStore` (all, or those named, in the store's order)."""
        files = store.files if names is None else _named(store.files, names)
        return cls(
            _shard_files(store),
            np.array([f.shard for f in files], dtype=np.int32),
            np.array([f.offset for f in files], dtype=np.int64),
            np.array([f.tokens for f in files], dtype=np.int64),
            [f.path for f in files],
        )

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], names: Sequence[str] | None = None) -> Pieces:
        """Token arrays held in memory, as one shard (tests, small tools)."""
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        flat = np.concatenate([np.asarray(a, dtype=np.int32) for a in arrays]) if arrays else np.zeros(0)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        names = list(names) if names is not None else [f"piece{i}" for i in range(len(arrays))]
        return cls(lambda _: flat, np.zeros(len(arrays), dtype=np.int32), offsets, lengths, names)


def _shard_files(store) -> Callable[[int], ShardFile]:
    """Shard number -> that shard of the store as a `ShardFile`, each opened once."""
    from midiseed.training.store import shard_name

    opened: dict[int, ShardFile] = {}

    def shard_of(i: int) -> ShardFile:
        if i not in opened:
            opened[i] = ShardFile(Path(store.root) / shard_name(store.shard_ids[i]))
        return opened[i]

    return shard_of


def _named(files, names: Sequence[str]):
    wanted = set(names)
    return [f for f in files if f.path in wanted]


def transposition_bounds(spec: str) -> tuple[int, int]:
    """'-5..6' -> (-5, 6); '0' -> (0, 0)."""
    try:
        if ".." in spec:
            lo, hi = (int(x) for x in spec.split(".."))
        else:
            lo = hi = int(spec)
    except ValueError as err:
        raise BadValue(f"transpose must look like -5..6 or 0, got {spec!r}") from err
    if lo > hi or lo < -24 or hi > 24:
        raise BadValue(f"transpose range must lie within -24..24 and be ordered, got {spec!r}")
    return lo, hi


def shift_range(windows: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of token ids, the lowest and highest shift in lo..hi that keeps every pitch in
    0..127. Where none does (lo..hi excludes 0 and the row's pitches leave no room), both are 0."""
    pitched = windows < PITCH_IDS
    pitch = windows % 128
    lowest = np.where(pitched, pitch, 127).min(axis=1)
    highest = np.where(pitched, pitch, 0).max(axis=1)
    down = np.maximum(lo, -lowest)
    up = np.minimum(hi, 127 - highest)
    empty = down > up
    return np.where(empty, 0, down), np.where(empty, 0, up)


def transpose(windows: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each row of token ids moved by its shift (pitch tokens only; durations stay)."""
    return np.where(windows < PITCH_IDS, windows + shifts[:, None], windows).astype(np.int32)


def random_transpose(windows: np.ndarray, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """Each row moved by a shift drawn uniformly from its valid part of lo..hi (`shift_range`)."""
    down, up = shift_range(windows, lo, hi)
    shifts = down + np.floor(rng.random(len(windows)) * (up - down + 1)).astype(np.int64)
    return transpose(windows, shifts)


def permute(i: np.ndarray, n: int, key: Sequence[int]) -> np.ndarray:
    """A pseudo-random permutation of 0..n-1, evaluated at `i`: a 4-round Feistel network on the
    smallest even power of two >= n, cycle-walking values that fall outside (fewer than 4 walks on
    average). Different keys give unrelated orders; no table of n numbers is built."""
    i = np.asarray(i, dtype=np.uint64)
    half = max(1, (max(int(n) - 1, 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    keys = np.random.default_rng(list(key)).integers(0, 2**62, size=4, dtype=np.uint64)

    def once(x: np.ndarray) -> np.ndarray:
        left, right = x >> np.uint64(half), x & mask
        for k in keys:
            left, right = right, left ^ (_mix(right ^ k) & mask)
        return (left << np.uint64(half)) | right

    out = once(i)
    outside = out >= n
    while outside.any():
        out[outside] = once(out[outside])
        outside = out >= n
    return out.astype(np.int64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves about half the output bits."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class Windows:
    """The windows of seq_len + 1 tokens (input + next-token target) of some files, `stride` apart.

    `batch(g)` is batch number g of training (shuffled passes, transposed) or of validation (in
    order, untransposed); see the module docstring."""

    def __init__(
        self,
        pieces: Pieces,
        seq_len: int,
        stride: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        transpose_range: tuple[int, int] | None = None,
        limit: int | None = None,
    ) -> None:
        self.pieces, self.seq_len, self.stride, self.batch_size = pieces, seq_len, stride, batch_size
        self.seed, self.shuffle, self.transpose_range = seed, shuffle, transpose_range
        counts = np.maximum(0, (pieces.length - seq_len - 1) // stride + 1)
        self.cum = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.available = int(self.cum[-1])
        # a cap (validation at scale): that many windows, evenly spread over all of them
        self.count = min(self.available, limit) if limit else self.available

    def __len__(self) -> int:
        """Windows in one pass."""
        return self.count

    def batches_per_pass(self) -> int:
        return -(-self.count // self.batch_size)

    def locate(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(file index, first token in its shard) of windows w (numbers in 0..count-1)."""
        w = np.asarray(w, dtype=np.int64)
        if self.count < self.available:
            w = w * self.available // self.count
        piece = np.searchsorted(self.cum, w, side="right") - 1
        return piece, self.pieces.offset[piece] + (w - self.cum[piece]) * self.stride

    def tokens(self, w: np.ndarray) -> np.ndarray:
        """(len(w), seq_len + 1) int32 token ids of windows w, read from the shards."""
        piece, start = self.locate(w)
        out = np.empty((len(start), self.seq_len + 1), dtype=np.int32)
        shard = self.pieces.shard[piece]
        for s in np.unique(shard):
            here = shard == s
            out[here] = rows(self.pieces.shard_of(int(s)), start[here], self.seq_len + 1)
        return out

    def order(self, g: int, size: int | None = None) -> np.ndarray:
        """Window numbers of batch g: positions g*B.. of the endless sequence of passes."""
        size = size or self.batch_size
        j = np.arange(g * self.batch_size, g * self.batch_size + size, dtype=np.int64)
        passes, at = j // self.count, j % self.count
        if not self.shuffle:
            return at
        out = np.empty_like(at)
        for p in np.unique(passes):
            here = passes == p
            out[here] = permute(at[here], self.count, (self.seed, int(p)))
        return out

    def batch(self, g: int, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (B, seq_len) and packed targets (B, seq_len, 2) of batch g."""
        full = self.tokens(self.order(g, size))
        if self.transpose_range is not None:
            rng = np.random.default_rng((self.seed, 1, g))
            full = random_transpose(full, *self.transpose_range, rng)
        return full[:, :-1], pack(full[:, 1:])

    def ordered_batch(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch i of one pass in order, the last one short: how validation is read."""
        w = np.arange(i * self.batch_size, min((i + 1) * self.batch_size, self.count))
        full = self.tokens(w)
        return full[:, :-1], pack(full[:, 1:])
