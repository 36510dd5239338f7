"""The codec's tokeniser, vectorised: grid notes -> token ids with numpy only, no Event objects.

`encode_notes` gives exactly ``codec.encode(notes_to_events(notes))`` (tests/test_codec.py checks
it on random and real pieces); the event path stays the definition, this is the fast way to it
for corpora (`midiseed data tokenize`): 3.2 ms of CPU for a 4,200-note song against 24 ms.
"""

from __future__ import annotations

import numpy as np

from midiseed.runtime.codec import Codec, clean_notes


def _ragged_arange(counts: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """concat(starts[i] + arange(counts[i]) for each i), without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.cumsum(counts) - counts  # where each run begins in the output
    return np.arange(total, dtype=np.int64) + np.repeat(starts - first, counts)


def encode_notes(notes: np.ndarray, codec: Codec, max_tokens: int | None = None) -> tuple[np.ndarray, int]:
    """`notes_to_tokens`, and how many ids the whole piece has (more than returned when cut).

    The piece is cut at every time a note starts or ends; each stretch between two such times is
    an event of the pitches sounding over it (held when struck earlier), split into pieces of at
    most grid.max_steps (all but the first held), or a rest of at most grid.max_rest steps."""
    grid = codec.grid
    notes = clean_notes(notes, grid)
    if len(notes) == 0:
        return np.zeros(0, dtype=np.int32), 0
    pitch, start, end = notes[:, 0], notes[:, 1], notes[:, 2]
    times = np.sort(np.concatenate([start, end]))
    times = times[np.r_[True, times[1:] != times[:-1]]]  # np.unique, 2x faster
    first_iv = np.searchsorted(times, start)  # each note sounds over intervals first_iv..last_iv-1
    spans = np.searchsorted(times, end) - first_iv
    iv = _ragged_arange(spans, first_iv)  # (note, interval) pairs, interval id of each
    note_of = np.repeat(np.arange(len(notes)), spans)
    held = iv > np.repeat(first_iv, spans)
    order = np.argsort(iv << 7 | pitch[note_of])  # by interval, then pitch (pairs are distinct)
    iv, note_of, held = iv[order], note_of[order], held[order]
    n_iv = len(times) - 1
    count = np.bincount(iv, minlength=n_iv)
    # polyphony cap: keep the lowest and the highest max_poly - 1 of each interval
    rank = np.arange(len(iv)) - np.repeat(np.cumsum(count) - count, count)
    n_of = count[iv]
    keep = (rank == 0) | (rank >= n_of - (grid.max_poly - 1))
    iv, pair_pitch, held = iv[keep], pitch[note_of[keep]], held[keep]
    m = np.bincount(iv, minlength=n_iv)  # pitches per event
    length = np.diff(times)
    length = np.where(m == 0, np.minimum(length, grid.max_rest), length)  # long silences shortened
    chunks = -(-length // grid.max_steps)  # events per interval after splitting
    total = int((chunks * (m + 1)).sum())
    if max_tokens is not None and total > max_tokens:
        chunk_iv = np.repeat(np.arange(n_iv), chunks)
        chunk_tok = (m + 1)[chunk_iv]
        fits = int(np.searchsorted(np.cumsum(chunk_tok), max_tokens, side="right"))
        # keep whole intervals below the cut, and the first chunks of the one it falls in
        n_full = int(chunk_iv[fits]) if fits < len(chunk_iv) else n_iv
        partial = fits - int(chunks[:n_full].sum())
        chunks = chunks[: n_full + (1 if partial else 0)].copy()
        if partial:
            chunks[-1] = partial
            length = length[: n_full + 1].copy()
            length[-1] = min(length[-1], partial * grid.max_steps)
        n_iv = len(chunks)
        m, length = m[:n_iv], length[:n_iv]
        cut = iv < n_iv
        iv, pair_pitch, held = iv[cut], pair_pitch[cut], held[cut]
    # one row per event (chunk): its interval, which piece of the interval, its steps
    chunk_iv = np.repeat(np.arange(n_iv), chunks)
    piece = np.arange(len(chunk_iv)) - np.repeat(np.cumsum(chunks) - chunks, chunks)
    last = piece == chunks[chunk_iv] - 1
    steps = np.where(last, length[chunk_iv] - grid.max_steps * piece, grid.max_steps)
    chunk_len = m[chunk_iv] + 1
    chunk_at = np.cumsum(chunk_len) - chunk_len  # where each event's tokens begin
    out = np.empty(int(chunk_len.sum()), dtype=np.int32)
    out[chunk_at + chunk_len - 1] = 255 + steps  # the duration closes each event
    # pitch tokens: every pair of the interval, once per piece of it
    pair_first = np.cumsum(m) - m  # index of each interval's first pair
    sel = _ragged_arange(m[chunk_iv], pair_first[chunk_iv])
    pos = _ragged_arange(m[chunk_iv], chunk_at)
    piece_of = np.repeat(piece, m[chunk_iv])
    is_held = held[sel] | (piece_of > 0)
    out[pos] = pair_pitch[sel] + 128 * is_held
    return out, total
