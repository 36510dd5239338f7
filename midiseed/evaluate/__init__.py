"""How good is a model file? Next-token scores against n-gram baselines, and how its output behaves.

Two questions, both asked on the files the model never trained on (every readable file of the data
folder that is not in the model's ``split["train"]``):

1. Next-token prediction, token by token on untransposed pieces: nats per token and top-1 accuracy
   of the LSTM next to unigram, bigram and trigram models fitted on the training files with the
   same transposition augmentation the model had.
2. Musical behaviour under each decoding option: how much of the output loops, how varied it is,
   and how far its pitch classes and durations are from the data's, with the data itself as a
   reference row.

Pure numpy and the Engine; no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np

from midiseed.errors import BadValue
from midiseed.runtime.codec import Event
from midiseed.runtime.engine import Engine
from midiseed.runtime.generate import Generator
from midiseed.runtime.sampling import Decoding
from midiseed.training.corpus import load_corpus
from midiseed.training.dataset import piece_events, transposition_range
from midiseed.training.loops import MAX_LOOP_EVENTS

DECODINGS = {
    "greedy": Decoding(),
    "temperature_1.0": Decoding(temperature=1.0),
    "top_k_8": Decoding(temperature=1.0, top_k=8),
    "no_repeat_12": Decoding(no_repeat=12),
}
MAX_PERIOD = MAX_LOOP_EVENTS  # longest loop period, in events, that `looped_mask` looks for
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
    nll, correct, n = 0.0, 0, 0
    for piece in pieces:
        seq = [int(t) for t in piece]
        for i in range(1, len(seq)):
            p = model.distribution(seq[max(0, i - model.order + 1) : i])
            nll -= float(np.log(p[seq[i]]))
            correct += int(np.argmax(p) == seq[i])
            n += 1
    return _scores(nll, correct, n)


def score_lstm(engine: Engine, pieces: Sequence[np.ndarray]) -> dict:
    """As `score_ngram`, for the model: one engine call per whole piece, from the zero state."""
    nll, correct, n = 0.0, 0, 0
    for piece in pieces:
        if len(piece) < 2:
            continue
        logits, _ = engine.run(np.asarray(piece, dtype=np.int32)[None, :], engine.zero_state())
        logits = logits[0, :-1].astype(np.float64)  # row t predicts token t + 1
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        targets = np.asarray(piece[1:], dtype=np.int64)
        nll -= float(logp[np.arange(len(targets)), targets].sum())
        correct += int((logits.argmax(axis=1) == targets).sum())
        n += len(targets)
    return _scores(nll, correct, n)


def _scores(nll: float, correct: int, n: int) -> dict:
    return {"nll": nll / n if n else None, "accuracy": correct / n if n else None}


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


def evaluate(
    model_path: Path | None,
    data_dir: Path,
    seeds: int | None = None,
    steps: int = 256,
    seed_len: int = 32,
    random_seed: int = 0,
    decodings: dict[str, Decoding] | None = None,
    max_period: int = MAX_PERIOD,
) -> dict:
    """Score the model file (None: the shipped default) on the files of data_dir it did not train on.
    `decodings` replaces the default set of decoding options compared (`DECODINGS`); `max_period`
    is the longest loop period counted, in events.

    ``next_token``: per model, mean NLL in nats per token and top-1 accuracy over positions 1..T-1 of
    every evaluation piece (untransposed). ``decoding``: per option of `DECODINGS`, `steps` events
    generated after the first `seed_len` events of each of the first `seeds` (None: every)
    evaluation pieces that long, with `loop_share` (see `looped_mask`), `distinct_4grams` (of
    events), `pitch_class_tv` and `duration_tv` (see `tv_distance`, against the whole evaluation
    data) averaged over those samples, and the samples' pooled histograms (as shares); ``data`` is
    the same for windows of `steps` events of the evaluation pieces. Raises ValueError when the
    model file has no training split, or when data_dir holds none of its training files (the
    baselines are fitted on them) or nothing else.
    """
    engine = Engine(model_path, provider="cpu")
    codec, grid, meta = engine.codec, engine.codec.grid, engine.info.meta
    if not isinstance(meta.get("split"), dict) or "train" not in meta["split"]:
        raise BadValue(f"{engine.path} records no training split; re-export it with `midiseed export`")
    train_names = set(meta["split"]["train"])
    corpus = load_corpus(Path(data_dir), grid)
    train_notes = [n for f, n in zip(corpus.files, corpus.notes) if f in train_names]
    eval_notes = [n for f, n in zip(corpus.files, corpus.notes) if f not in train_names]
    if not corpus.files:
        raise BadValue(f"{data_dir} has no readable MIDI files ({len(corpus.skipped)} skipped)")
    if not eval_notes:
        n = len(corpus.files)
        raise BadValue(f"{data_dir} holds only the model's {n} training files; nothing is left to evaluate")
    if not train_notes:
        raise BadValue(f"{data_dir} holds none of the model's training files, so no baselines can be fitted")

    transpose = str((meta.get("data") or {}).get("transpose", "0"))
    train_tokens = [codec.encode(p) for p in piece_events(train_notes, grid, transposition_range(transpose))]
    eval_pieces = piece_events(eval_notes, grid, [0])
    eval_tokens = [codec.encode(p) for p in eval_pieces]

    next_token = {"lstm": score_lstm(engine, eval_tokens)}
    for name, order in BASELINES.items():
        next_token[name] = score_ngram(NGram(order, len(codec)).fit(train_tokens), eval_tokens)

    reference = histograms([ev for p in eval_pieces for ev in p], grid.max_steps)
    primers = [p for p in eval_pieces if len(p) >= seed_len][:seeds]  # [:None]: all
    decoding = {}
    for name, options in (decodings or DECODINGS).items():
        outputs = []
        for k, piece in enumerate(primers):
            gen = Generator(engine, options, seed=random_seed + k)
            gen.prime(piece[:seed_len])
            outputs.append(gen.generate(steps))
        decoding[name] = behaviour(outputs, reference, grid.max_steps, max_period)
    windows = [p[i : i + steps] for p in eval_pieces for i in range(0, max(1, len(p) - steps + 1), steps)]
    decoding["data"] = behaviour(windows, reference, grid.max_steps, max_period)

    return {
        "model": str(engine.path),
        "preset": engine.info.preset,
        "files": {"train": len(train_notes), "evaluated": len(eval_notes)},
        "tokens_evaluated": sum(max(len(t) - 1, 0) for t in eval_tokens),
        "next_token": next_token,
        "lstm_vs_trigram_nll_ratio": _ratio(next_token["lstm"]["nll"], next_token["trigram"]["nll"]),
        "decoding": decoding,
        "settings": {
            "data_dir": str(data_dir),
            "seeds": seeds,
            "steps": steps,
            "seed_len": seed_len,
            "random_seed": random_seed,
            "baseline_transpose": transpose,
            "max_loop_period": max_period,
            "smoothing": "Witten-Bell interpolation down to an add-one unigram",
        },
    }


def format_report(report: dict) -> str:
    """Two markdown tables for MODEL_CARD.md: next-token scores, then decoding behaviour."""
    trigram, files = report["next_token"]["trigram"]["nll"], report["files"]
    lines = [
        f"Next-token prediction on {files['evaluated']} held-out files ({report['tokens_evaluated']} tokens);"
        f" baselines fitted on {files['train']} training files.",
        "",
        "| model | NLL (nats/token) | NLL / trigram | top-1 accuracy |",
        "|---|---:|---:|---:|",
    ]
    for name, row in report["next_token"].items():
        cells = [
            _fmt(row["nll"], ".3f"),
            _fmt(_ratio(row["nll"], trigram), ".3f"),
            _fmt(row["accuracy"], ".1%"),
        ]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    s = report["settings"]
    lines += [
        "",
        f"Decoding behaviour: {s['steps']} events after a {s['seed_len']}-event seed from held-out pieces; "
        f"`data` is windows of {s['steps']} events of the held-out pieces themselves.",
        "",
        f"| decoding | samples | loop share (period ≤ {s['max_loop_period']}) | distinct 4-grams"
        " | pitch-class TV | duration TV |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["decoding"].items():
        cells = [
            str(row["samples"]),
            _fmt(row["loop_share"], ".1%"),
            _fmt(row["distinct_4grams"], ".1%"),
            _fmt(row["pitch_class_tv"], ".3f"),
            _fmt(row["duration_tv"], ".3f"),
        ]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)
