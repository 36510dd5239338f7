"""How good is a model file? Next-token scores against n-gram baselines, and how its output behaves.

Three questions, asked on files the model never trained on (its test split, its validation split,
or, for models that record neither, every readable file of the data folder not in ``split["train"]``):

1. Next-token prediction, token by token on untransposed pieces: nats per token and top-1 accuracy
   of the LSTM next to unigram, bigram and trigram models fitted on the training files with the
   same transposition augmentation the model had.
2. Musical behaviour under each decoding option: how much of the output loops, how varied it is,
   and how far its pitch classes and durations are from the data's, with the data itself as a
   reference row.
3. Does it follow the seed? Texture, rhythm, key, register and loops of greedy answers against
   their seeds, per collection (the first folder under the data folder): `midiseed.evaluate.follow`.

Pure numpy and the Engine; no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
from midiseed.evaluate.follow import ANSWER_EVENTS, follow_table, format_follow
from midiseed.evaluate.nexttoken import (
    BASELINES,
    KINDS,
    NGram,
    melody_nll,
    piece_scores_lstm,
    piece_scores_ngram,
    score_lstm,
    score_ngram,
    totals,
)
from midiseed.runtime.engine import Engine
from midiseed.runtime.generate import Generator
from midiseed.runtime.memory import MEMORY_WEIGHT
from midiseed.runtime.sampling import LOOP_GUARD, Decoding, Steering
from midiseed.training.corpus import load_corpus
from midiseed.training.dataset import piece_events, transposition_range

DECODINGS = {
    "greedy": Decoding(),
    "temperature_1.0": Decoding(temperature=1.0),
    "top_k_8": Decoding(temperature=1.0, top_k=8),
    "no_repeat_12": Decoding(no_repeat=12),
    f"loop_guard_{LOOP_GUARD}": Decoding(loop_guard=LOOP_GUARD),
}
# evaluate() adds this row with the memory weight it was given (none when 0)
WITH_MEMORY_DECODING = f"loop_guard_{LOOP_GUARD}+memory"
WITH_MEMORY = "lstm+memory"  # the next-token row of the network mixed with the piece's memory
__all__ = [
    "BASELINES",
    "DECODINGS",
    "MAX_PERIOD",
    "NGram",
    "behaviour",
    "choose_split",
    "collection_of",
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


def choose_split(meta: dict, files: list[str], split: str | None = None) -> tuple[list[str], list[str], str]:
    """(training files, files to evaluate, the split's name) among `files` (paths under the data folder).

    `split` "test" or "validation" takes that list of the model's split; None takes "test" when the
    model records one, else every file not in "train" ("held-out": older models, the shipped one
    included). Split lists of bare file names (no folder: models trained on one flat folder) are
    matched by file name, so a file of a collection folder is never evaluated when a file of that
    name was trained on. Raises BadValue for a split the model does not record."""
    recorded = meta.get("split")
    if not isinstance(recorded, dict) or "train" not in recorded:
        raise BadValue("the model records no training split; re-export it with `midiseed export`")
    if split is None:
        # a model trained with --test-fraction 0 (or on too few files) records an empty test list
        split = "test" if recorded.get("test") else "held-out"
    if split != "held-out" and split not in recorded:
        have = ", ".join(k for k in ("validation", "test") if k in recorded) or "none"
        raise BadValue(f"--split {split}: the model records no {split!r} split (it has: {have}; held-out)")

    def matcher(names: list[str]):
        names = set(names)
        if any("/" in n for n in names):
            return lambda f: f in names
        return lambda f: f.rsplit("/", 1)[-1] in names

    is_train = matcher(recorded["train"])
    train = [f for f in files if is_train(f)]
    if split == "held-out":
        return train, [f for f in files if not is_train(f)], split
    chosen = matcher(recorded[split])
    return train, [f for f in files if chosen(f) and not is_train(f)], split


def collection_of(path: str) -> str:
    """A file's collection: the first folder of its path under the data folder ("" at the top)."""
    return path.split("/", 1)[0] if "/" in path else ""


def evaluate(
    model_path: Path | None,
    data_dir: Path,
    seeds: int | None = None,
    steps: int = 256,
    seed_len: int = 32,
    random_seed: int = 0,
    decodings: dict[str, Decoding] | None = None,
    max_period: int = MAX_PERIOD,
    split: str | None = None,
    follow_seeds: int | None = 50,
    answer_len: int = ANSWER_EVENTS,
    memory: float = MEMORY_WEIGHT,
    follow_per_piece: int = 1,
) -> dict:
    """Score the model file (None: the shipped default) on the files of data_dir it did not train on.
    `decodings` replaces the default set of decoding options compared (`DECODINGS`); `max_period`
    is the longest loop period counted, in events. `split` picks the files (see `choose_split`).

    ``next_token``: per model, mean NLL in nats per token and top-1 accuracy over positions 1..T-1 of
    every evaluation piece (untransposed): ``lstm`` the network alone, ``lstm+memory`` (when
    `memory` > 0) the network mixed with the piece's own memory of that weight, as served with
    `--memory` (`midiseed.runtime.memory`; off by default); the n-gram baselines are fitted on the
    model's training files found in data_dir, and left out (with a note) when there are none.
    ``decoding``: per option of `DECODINGS` (and `WITH_MEMORY_DECODING` when `memory` > 0), `steps`
    events generated (unsteered: the model alone) after the first `seed_len` events of each of the
    first `seeds` (None: every) evaluation pieces that long, with `loop_share` (see `looped_mask`),
    `distinct_4grams` (of events), `pitch_class_tv` and `duration_tv` (see `tv_distance`, against
    the whole evaluation data) averaged over those samples, and the samples' pooled histograms (as
    shares); ``data`` is the same for windows of `steps` events of the
    evaluation pieces. ``follow``: the "follows the seed" table per collection (see
    `midiseed.evaluate.follow`), up to `follow_seeds` seeds a collection (0: no table). Raises
    ValueError (BadValue) when the model file has no training split, or data_dir holds nothing to
    evaluate.
    """
    engine = Engine(model_path, provider="cpu")
    codec, grid, meta = engine.codec, engine.codec.grid, engine.info.meta
    corpus = load_corpus(Path(data_dir), grid)
    if not corpus.files:
        raise BadValue(f"{data_dir} has no readable MIDI files ({len(corpus.skipped)} skipped)")
    try:
        train_files, eval_files, split_name = choose_split(meta, corpus.files, split)
    except BadValue as err:
        raise BadValue(f"{engine.path}: {err}") from None
    notes_of = dict(zip(corpus.files, corpus.notes))
    train_notes = [notes_of[f] for f in train_files]
    eval_notes = [notes_of[f] for f in eval_files]
    if not eval_notes:
        n = len(corpus.files)
        raise BadValue(
            f"{data_dir} holds only the model's {n} training files; nothing is left to evaluate"
            if len(train_files) == n
            else f"{data_dir} holds none of the model's {split_name!r} files"
        )

    transpose = str((meta.get("data") or {}).get("transpose", "0"))
    eval_pieces = piece_events(eval_notes, grid, [0])  # transposition 0 keeps every piece, in order
    eval_tokens = [codec.encode(p) for p in eval_pieces]

    weights = (0.0, memory) if memory else (0.0,)  # the network alone, and with the memory
    scores = dict(zip(("lstm", WITH_MEMORY), piece_scores_lstm(engine, eval_tokens, weights)))
    if train_notes:
        train_pieces = piece_events(train_notes, grid, transposition_range(transpose))
        train_tokens = [codec.encode(p) for p in train_pieces]
        for name, order in BASELINES.items():
            scores[name] = piece_scores_ngram(NGram(order, len(codec)).fit(train_tokens), eval_tokens)
    next_token = {name: totals(rows) for name, rows in scores.items()}
    collection_of_piece = np.array([collection_of(f) for f in eval_files])
    next_token_by_collection = {}
    for coll in sorted(set(collection_of_piece)):
        mask = collection_of_piece == coll
        rows = {name: totals(r[mask]) for name, r in scores.items()}
        next_token_by_collection[coll] = {
            "files": int(mask.sum()),
            "tokens": int(scores["lstm"][mask, 2].sum()),
            **rows,
            "lstm_vs_trigram_nll_ratio": _ratio(rows["lstm"]["nll"], rows.get("trigram", {}).get("nll")),
            "memory_vs_trigram_nll_ratio": _ratio(
                rows.get(WITH_MEMORY, {}).get("nll"), rows.get("trigram", {}).get("nll")
            ),
            "melody_vs_trigram_nll_ratio": _ratio(
                melody_nll(scores["lstm"][mask]),
                melody_nll(scores["trigram"][mask]) if "trigram" in scores else None,
            ),
        }

    reference = histograms([ev for p in eval_pieces for ev in p], grid.max_steps)
    primers = [p for p in eval_pieces if len(p) >= seed_len][:seeds]  # [:None]: all
    decoding = {}
    if decodings is None:
        decodings = dict(DECODINGS)
        if memory:
            decodings[WITH_MEMORY_DECODING] = Decoding(loop_guard=LOOP_GUARD, memory=memory)
    for name, options in decodings.items():
        outputs = []
        for k, piece in enumerate(primers):
            gen = Generator(engine, options, seed=random_seed + k, steering=Steering())
            gen.prime(piece[:seed_len])
            outputs.append(gen.generate(steps))
        decoding[name] = behaviour(outputs, reference, grid.max_steps, max_period)
    windows = [p[i : i + steps] for p in eval_pieces for i in range(0, max(1, len(p) - steps + 1), steps)]
    decoding["data"] = behaviour(windows, reference, grid.max_steps, max_period)

    by_collection: dict[str, list] = {}
    for f, piece in zip(eval_files, eval_pieces):
        by_collection.setdefault(collection_of(f), []).append(piece)
    follow = (
        follow_table(engine, by_collection, follow_seeds, seed_len, answer_len, per_piece=follow_per_piece)
        if follow_seeds != 0
        else {}
    )
    trigram = next_token.get("trigram", {}).get("nll")
    return {
        "model": str(engine.path),
        "preset": engine.info.preset,
        "split": split_name,
        "files": {"train": len(train_notes), "evaluated": len(eval_notes), "unreadable": len(corpus.skipped)},
        "collections": {c: len(p) for c, p in sorted(by_collection.items())},
        "tokens_evaluated": sum(max(len(t) - 1, 0) for t in eval_tokens),
        "next_token": next_token,
        "lstm_vs_trigram_nll_ratio": _ratio(next_token["lstm"]["nll"], trigram),
        "memory_vs_trigram_nll_ratio": _ratio(next_token.get(WITH_MEMORY, {}).get("nll"), trigram),
        "next_token_by_collection": next_token_by_collection,
        "decoding": decoding,
        "follow": follow,
        "settings": {
            "data_dir": str(data_dir),
            "seeds": seeds,
            "steps": steps,
            "seed_len": seed_len,
            "random_seed": random_seed,
            "baseline_transpose": transpose,
            "max_loop_period": max_period,
            "smoothing": "Witten-Bell interpolation down to an add-one unigram",
            "follow_seeds": follow_seeds,
            "follow_per_piece": follow_per_piece,
            "answer_len": answer_len,
            "memory": memory,
        },
    }


def format_report(report: dict) -> str:
    """Markdown tables for MODEL_CARD.md: next-token scores, decoding behaviour, and (when measured)
    the "follows the seed" table."""
    trigram, files = report["next_token"].get("trigram", {}).get("nll"), report["files"]
    fitted = (
        f"baselines fitted on {files['train']} training files"
        if files["train"]
        else "no n-gram baselines: the data folder holds none of the model's training files"
    )
    unreadable = files.get("unreadable")
    skipped = (
        f" ({unreadable} files of the data folder could not be read and are left out)" if unreadable else ""
    )
    lines = [
        f"Next-token prediction on {files['evaluated']} files of the {report.get('split', 'held-out')} split"
        f" ({report['tokens_evaluated']} tokens); {fitted}.{skipped}",
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
    by_collection = report.get("next_token_by_collection") or {}
    if len(by_collection) > 1:
        memory = WITH_MEMORY in report["next_token"]
        extra = " NLL with memory | × trigram |" if memory else ""
        lines += [
            "",
            "Per collection (the first folder under the data folder)"
            + (f"; `{WITH_MEMORY}`: the network mixed with the piece's own memory" if memory else "")
            + ":",
            "",
            f"| collection | files | tokens | NLL | trigram NLL | NLL / trigram | top-1 accuracy |{extra}",
            "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if memory else ""),
        ]
        for coll, row in by_collection.items():
            cells = [
                str(row["files"]),
                str(row["tokens"]),
                _fmt(row["lstm"]["nll"], ".3f"),
                _fmt(row.get("trigram", {}).get("nll"), ".3f"),
                _fmt(row["lstm_vs_trigram_nll_ratio"], ".3f"),
                _fmt(row["lstm"]["accuracy"], ".1%"),
            ]
            if memory:
                cells += [
                    _fmt(row[WITH_MEMORY]["nll"], ".3f"),
                    _fmt(row["memory_vs_trigram_nll_ratio"], ".3f"),
                ]
            lines.append(f"| {coll or '(top level)'} | {' | '.join(cells)} |")
        lines += _kinds_table(by_collection)
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
    text = "\n".join(lines) + "\n"
    if report.get("follow"):
        text += "\n" + format_follow(report["follow"], s["seed_len"], s["answer_len"])
    return text


def _kinds_table(by_collection: dict) -> list[str]:
    """Each collection's NLL per kind of token, the network's against the trigram's (nothing when
    the report has no trigram)."""
    if not any("trigram" in row for row in by_collection.values()):
        return []
    lines = [
        "",
        "By kind of token (`midiseed.evaluate.nexttoken.KINDS`): share of the tokens, then network /"
        " trigram NLL = ratio. A held pitch was decided tokens back, where a trigram cannot see;"
        " struck pitches and durations are what it sees as well as the network does:",
        "",
        "| collection | all tokens | "
        + " | ".join(f"{k} pitch" if k != "duration" else k for k in KINDS)
        + " | struck and duration only |",
        "|---|---|" + "---|" * len(KINDS) + "---:|",
    ]
    for coll, row in by_collection.items():
        net, tri = row["lstm"], row.get("trigram")
        if tri is None:
            continue
        ratio = _fmt(row["lstm_vs_trigram_nll_ratio"], ".2f")
        cells = [f"{_fmt(net['nll'], '.3f')} / {_fmt(tri['nll'], '.3f')} = {ratio}"]
        for kind in KINDS:
            a, b = net["by_kind"][kind], tri["by_kind"][kind]
            share = "<1%" if a["share"] and a["share"] < 0.005 else _fmt(a["share"], ".0%")
            cells.append(
                f"{share}: {_fmt(a['nll'], '.2f')} / {_fmt(b['nll'], '.2f')}"
                f" = {_fmt(_ratio(a['nll'], b['nll']), '.2f')}"
                if a["nll"] is not None
                else "0%"
            )
        cells.append(_fmt(row.get("melody_vs_trigram_nll_ratio"), ".2f"))
        lines.append(f"| {coll or '(top level)'} | {' | '.join(cells)} |")
    return lines


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)
