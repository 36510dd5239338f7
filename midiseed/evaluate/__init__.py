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

from pathlib import Path

from midiseed.errors import BadValue
from midiseed.evaluate.behaviour import (
    MAX_PERIOD,
    behaviour,
    distinct_ngrams,
    histograms,
    loop_share,
    looped_mask,
    tv_distance,
)
from midiseed.evaluate.nexttoken import BASELINES, NGram, score_lstm, score_ngram
from midiseed.runtime.engine import Engine
from midiseed.runtime.generate import Generator
from midiseed.runtime.sampling import Decoding
from midiseed.training.corpus import load_corpus
from midiseed.training.dataset import piece_events, transposition_range

DECODINGS = {
    "greedy": Decoding(),
    "temperature_1.0": Decoding(temperature=1.0),
    "top_k_8": Decoding(temperature=1.0, top_k=8),
    "no_repeat_12": Decoding(no_repeat=12),
}
__all__ = [
    "BASELINES",
    "DECODINGS",
    "MAX_PERIOD",
    "NGram",
    "behaviour",
    "distinct_ngrams",
    "evaluate",
    "format_report",
    "histograms",
    "loop_share",
    "looped_mask",
    "score_lstm",
    "score_ngram",
    "tv_distance",
]


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
