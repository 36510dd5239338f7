"""How the served decoding was chosen: the "follows the seed" table on the validation split, per setting.

    python scripts/decoding_sweep.py SWEEP [MODEL] [SEEDS] [SPLIT] [PER_PIECE] [MODE]
        (defaults: the shipped model, 50, validation, 1, respond)

SWEEP is `loop_guard` (how the loop guard was chosen), `memory` (with and without the piece's
memory, on top of the guard) or `pitch_guard` (with and without the pitch guard). Needs
data/music21 (scripts/make_music21_model.sh exports it).
Prints, per setting, how many collections with at least 7 seeds meet each goal of issue 11 on the
served answers (following the seed's voices and register), then the table itself. SPLIT `test`
reports a choice already made; choices are made on validation. PER_PIECE above 1 lets a collection
with fewer pieces than SEEDS take up to that many seeds from each piece (`follow_table`'s
`per_piece`): a median over 9 madrigals then rests on more than 9 answers. MODE `continue` plays
each seed note by note into the daemon's Performer in continue mode instead, and measures what it
streams from the last chord on (`midiseed.bench.stream`; about 4 times slower).
"""

import sys
from pathlib import Path

from midiseed.bench.newuser import IN_KEY_GOAL, RHYTHM_GOAL, TEXTURE_GOAL
from midiseed.evaluate import choose_split, collection_of
from midiseed.evaluate.follow import follow_table, format_follow
from midiseed.runtime.engine import Engine
from midiseed.runtime.memory import MEMORY_WEIGHT
from midiseed.runtime.sampling import LOOP_GUARD, Decoding
from midiseed.training.corpus import load_corpus
from midiseed.training.dataset import piece_events

SWEEPS = {
    "loop_guard": {
        "off": Decoding(),
        "32 x1.5": Decoding(loop_guard=32, loop_repeats=1.5),
        "32 x1.75": Decoding(loop_guard=32, loop_repeats=1.75),
        "32 x2": Decoding(loop_guard=32, loop_repeats=2.0),
    },
    "memory": {
        "guard": Decoding(loop_guard=LOOP_GUARD),
        f"guard + memory {MEMORY_WEIGHT}": Decoding(loop_guard=LOOP_GUARD, memory=MEMORY_WEIGHT),
    },
    "pitch_guard": {
        "guard": Decoding(loop_guard=LOOP_GUARD),
        "guard + pitch guard": Decoding(loop_guard=LOOP_GUARD, pitch_guard=True),
    },
}
MIN_SEEDS = 7
LOOP_MARGIN = 0.05  # loops: no more than the music's own share + 5 points


def goals(table: dict) -> dict:
    met = dict.fromkeys(("texture", "rhythm", "in_key", "loop_8", "loop_32"), 0)
    for entry in table.values():
        row, data = entry["served"], entry["data"]
        if row["seeds"] < MIN_SEEDS:
            continue
        met["texture"] += row["texture"] is not None and row["texture"] <= TEXTURE_GOAL
        met["rhythm"] += row["rhythm"] is not None and row["rhythm"] <= RHYTHM_GOAL
        met["in_key"] += row["in_key"] is not None and row["in_key"] >= IN_KEY_GOAL
        for p in ("loop_8", "loop_32"):
            met[p] += row[p] is not None and row[p] <= (data[p] or 0) + LOOP_MARGIN
    return met


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in SWEEPS:
        sys.exit(
            f"usage: decoding_sweep.py {{{'|'.join(SWEEPS)}}} [MODEL] [SEEDS] [SPLIT] [PER_PIECE] [MODE]"
        )
    settings = SWEEPS[sys.argv[1]]
    model = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    seeds = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    split = sys.argv[4] if len(sys.argv) > 4 else "validation"
    per_piece = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    live = (sys.argv[6] if len(sys.argv) > 6 else "respond") == "continue"
    engine = Engine(model, provider="cpu")
    corpus = load_corpus(Path("data/music21"), engine.codec.grid)
    _, files, _ = choose_split(engine.info.meta, corpus.files, split)
    notes_of = dict(zip(corpus.files, corpus.notes))
    pieces: dict[str, list] = {}
    for f, p in zip(files, piece_events([notes_of[f] for f in files], engine.codec.grid, [0])):
        pieces.setdefault(collection_of(f), []).append(p)
    tables = {}
    for name, decoding in settings.items():
        served = {"served": (None, decoding)}
        tables[name] = follow_table(engine, pieces, seeds, sources=served, per_piece=per_piece, live=live)
        counted = sum(e["served"]["seeds"] >= MIN_SEEDS for e in tables[name].values())
        print(f"{name}: goals met in {counted} collections: {goals(tables[name])}", flush=True)
    for name, table in tables.items():
        print(f"\n## {name}\n\n{format_follow(table)}")


if __name__ == "__main__":
    main()
