"""Next-token scores: token n-gram baselines (Witten-Bell) and the model, in nats per token."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from midiseed.runtime.engine import Engine
from midiseed.runtime.memory import Memory

BASELINES = {"unigram": 1, "bigram": 2, "trigram": 3}


class NGram:
    """A token n-gram model, Witten-Bell interpolated down to an add-one unigram.

    P_k(w | last k tokens) = λ·count(ctx, w)/count(ctx) + (1 - λ)·P_{k-1}(w | last k-1 tokens), with
    λ = count(ctx) / (count(ctx) + distinct followers of ctx); an unseen context falls back to the
    lower order. The add-one unigram at the bottom is never zero, so neither is any probability.
    """

    def __init__(self, order: int, vocab_size: int) -> None:
        if order < 1:
            raise ValueError(f"n-gram order must be 1 or more, got {order}")
        self.order, self.vocab_size = order, vocab_size
        self.unigram = np.full(vocab_size, 1.0 / vocab_size)
        # tables[k]: code of a k-token context -> (following token ids, their counts)
        self.tables: list[dict[int, tuple[np.ndarray, np.ndarray]]] = [{} for _ in range(order)]

    def fit(self, pieces: Sequence[np.ndarray]) -> NGram:
        """Count the n-grams inside each piece (none across piece boundaries)."""
        pieces = [np.asarray(p, dtype=np.int64) for p in pieces]
        flat = np.concatenate([np.zeros(0, dtype=np.int64), *pieces])
        counts = np.bincount(flat, minlength=self.vocab_size)
        self.unigram = (counts + 1.0) / (counts.sum() + self.vocab_size)
        for k in range(1, self.order):
            codes = [_gram_codes(p, k + 1, self.vocab_size) for p in pieces]
            grams, gram_counts = np.unique(np.concatenate([flat[:0], *codes]), return_counts=True)
            if len(grams) == 0:
                continue
            contexts, nexts = np.divmod(grams, self.vocab_size)
            starts = np.flatnonzero(np.r_[True, contexts[1:] != contexts[:-1]])
            ends = np.r_[starts[1:], len(grams)]
            self.tables[k] = {
                int(contexts[s]): (nexts[s:e], gram_counts[s:e].astype(np.float64))
                for s, e in zip(starts, ends)
            }
        return self

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """P(next token | context) over the whole vocabulary; only the last order-1 tokens matter."""
        p = self.unigram.copy()
        for k in range(1, min(self.order, len(context) + 1)):
            entry = self.tables[k].get(_context_code(context[-k:], self.vocab_size))
            if entry is None:
                break  # every longer context ends with this unseen one, so it is unseen too
            nexts, counts = entry
            total = counts.sum()
            lam = total / (total + len(nexts))
            p *= 1.0 - lam
            p[nexts] += lam * counts / total
        return p


def _gram_codes(seq: np.ndarray, n: int, vocab_size: int) -> np.ndarray:
    """One integer per n-gram of seq: its tokens as digits in base vocab_size."""
    if len(seq) < n:
        return np.zeros(0, dtype=np.int64)
    code = np.zeros(len(seq) - n + 1, dtype=np.int64)
    for m in range(n):
        code = code * vocab_size + seq[m : len(seq) - n + 1 + m]
    return code


def _context_code(context: Sequence[int], vocab_size: int) -> int:
    code = 0
    for token in context:
        code = code * vocab_size + int(token)
    return code


def score_ngram(model: NGram, pieces: Sequence[np.ndarray]) -> dict:
    """Mean NLL (nats/token) and top-1 accuracy at positions 1..T-1 of every piece."""
    return totals(piece_scores_ngram(model, pieces))


def score_lstm(engine: Engine, pieces: Sequence[np.ndarray]) -> dict:
    """As `score_ngram`, for the model: one engine call per whole piece, from the zero state."""
    return totals(piece_scores_lstm(engine, pieces)[0])


# The codec spells an event as its struck pitches, its held pitches ("this note goes on") and one
# duration token (`midiseed.runtime.codec.Codec`): the kinds of token scored apart. A held pitch is
# decided tokens back, where an n-gram cannot see; struck pitches and durations are the melody.
KINDS = ("struck", "held", "duration")
ROW = 3 + 2 * len(KINDS)  # (NLL, correct, positions), then (NLL, positions) of each kind


def kind_of(tokens: np.ndarray) -> np.ndarray:
    """0 struck pitch, 1 held pitch, 2 duration, for each token id (codec version 1's layout)."""
    return np.minimum(np.asarray(tokens) // 128, 2)


def score_row(nll: np.ndarray, correct: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """One piece's row from its per-position NLL (nats), top-1 hits and target tokens: the totals,
    then the NLL and count of each kind of target token."""
    kinds = kind_of(targets)
    row = [float(nll.sum()), int(correct.sum()), len(targets)]
    for k in range(len(KINDS)):
        row += [float(nll[kinds == k].sum()), int((kinds == k).sum())]
    return np.array(row)


def piece_scores_ngram(model: NGram, pieces: Sequence[np.ndarray]) -> np.ndarray:
    """Per piece a row (see `score_row`): summed NLL in nats, correct top-1 guesses, positions
    scored (1..T-1), then summed NLL and positions of each of the `KINDS` of token."""
    rows = np.zeros((len(pieces), ROW))
    for row, piece in zip(rows, pieces):
        seq = [int(t) for t in piece]
        nll, correct = np.zeros(max(len(seq) - 1, 0)), np.zeros(max(len(seq) - 1, 0))
        for i in range(1, len(seq)):
            p = model.distribution(seq[max(0, i - model.order + 1) : i])
            nll[i - 1], correct[i - 1] = -float(np.log(p[seq[i]])), np.argmax(p) == seq[i]
        row[:] = score_row(nll, correct, np.asarray(seq[1:], dtype=np.int64))
    return rows


def piece_scores_lstm(
    engine: Engine, pieces: Sequence[np.ndarray], memories: Sequence[float] = (0.0,), **memory_shape
) -> list[np.ndarray]:
    """As `piece_scores_ngram`, for the model (one network call per piece from the zero state), one
    array of rows per weight in `memories`: 0 the network alone, above 0 the network mixed with the
    piece's own memory of that weight as `Generator` mixes it (`midiseed.runtime.memory`;
    `memory_shape`: its other constructor arguments)."""
    rows = [np.zeros((len(pieces), ROW)) for _ in memories]
    for i, piece in enumerate(pieces):
        if len(piece) < 2:
            continue
        logp = network_logprobs(engine, piece)
        targets = np.asarray(piece[1:], dtype=np.int64)
        for out, weight in zip(rows, memories):
            mixed = with_memory(logp, piece, weight, **memory_shape) if weight else logp
            nll = -mixed[np.arange(len(targets)), targets]
            out[i] = score_row(nll, mixed.argmax(axis=1) == targets, targets)
    return rows


def network_logprobs(engine: Engine, piece: np.ndarray) -> np.ndarray:
    """The network's next-token log-probabilities along a piece from the zero state: row t is its
    prediction of token t + 1 (len(piece) - 1 rows)."""
    logits, _ = engine.run(np.asarray(piece, dtype=np.int32)[None, :], engine.zero_state())
    logits = logits[0, :-1].astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def with_memory(logp: np.ndarray, piece: np.ndarray, weight: float, **memory_shape) -> np.ndarray:
    """`network_logprobs` rows mixed with the piece's memory: for row t it has read piece[: t + 1]."""
    mem = Memory(logp.shape[1], weight, **memory_shape)
    mixed = logp.copy()
    for t, token in enumerate(np.asarray(piece[: len(logp)]).tolist()):
        mem.feed(token)
        mixed[t] = mem.mix(logp[t])
    return mixed


def totals(rows: np.ndarray) -> dict:
    """Mean NLL and accuracy of the pieces' rows (`score_row`), pooled by token, and per kind of
    token its share of the positions and mean NLL."""
    sums = _sums(rows)
    nll, correct, n = sums[:3]
    kinds = {}
    for kind in KINDS:
        kind_nll, kind_n = _kind(sums, kind)
        kinds[kind] = {
            "share": float(kind_n / n) if n else None,
            "nll": float(kind_nll / kind_n) if kind_n else None,
        }
    return {
        "nll": float(nll / n) if n else None,
        "accuracy": float(correct / n) if n else None,
        "by_kind": kinds,
    }


def melody_nll(rows: np.ndarray) -> float | None:
    """Mean NLL over struck-pitch and duration tokens only: what an n-gram sees as well as a network
    does, where held pitches are not (see `KINDS`)."""
    sums = _sums(rows)
    (struck_nll, struck_n), (duration_nll, duration_n) = _kind(sums, "struck"), _kind(sums, "duration")
    n = struck_n + duration_n
    return float((struck_nll + duration_nll) / n) if n else None


def _sums(rows: np.ndarray) -> np.ndarray:
    """The pieces' rows (`score_row`) summed."""
    return rows.sum(axis=0) if len(rows) else np.zeros(ROW)


def _kind(sums: np.ndarray, kind: str) -> tuple[float, float]:
    """(summed NLL, positions) of one of the `KINDS` in summed rows."""
    k = 3 + 2 * KINDS.index(kind)
    return sums[k], sums[k + 1]
