"""How long answers drift: served answers of many events, per decoding, late against the seed.

    python scripts/long_answers.py SWEEP [SPLIT] [SEEDS] [EVENTS] [COLLECTIONS]
        (defaults: validation, 12 seeds a collection, 512 events,
         bach,palestrina,trecento,monteverdi,oneills1850,essenFolksong)

SWEEP is `anchor` (the shipped decoding against the anchor at 64 events) or `pitch_guard` (against
the pitch guard from the first event). The follow table (`midiseed evaluate`) scores 64-event
answers; `continue` mode and long calls play far longer. Each seed is the first 32 events of a
held-out piece (spread evenly over the usable ones); the answer follows it as `serve` does. Printed
per collection and decoding, over the answer's second half (events EVENTS/2 .. EVENTS-1), means
over seeds (and in a `the music` row, over every held-out piece that goes on that long after its
first 32 events, its own events there): voices (notes per sounding event against the seed's), top
and bass (the mean highest and lowest pitch against the seed's, semitones), and the shares of
events in loops of period <= 8, whole events and pitches alone; then the same per stretch of 64
events. Needs data/music21. Choices are made on validation; SPLIT `test` reports one already made.
About 3 minutes a decoding on the 2-core build machine.
"""

import sys
from pathlib import Path

import numpy as np

from midiseed.evaluate import choose_split, collection_of
from midiseed.evaluate.follow import PITCH_LOOP, loops, usable_seed
from midiseed.runtime.codec import Event
from midiseed.runtime.engine import Engine
from midiseed.runtime.generate import Generator
from midiseed.runtime.sampling import LOOP_GUARD, Decoding
from midiseed.training.corpus import load_corpus
from midiseed.training.dataset import piece_events

SEED = 32
STRETCH = 64
SWEEPS = {
    "anchor": {
        "shipped": Decoding(loop_guard=LOOP_GUARD),
        "anchor 64": Decoding(loop_guard=LOOP_GUARD, anchor=64),
    },
    "pitch_guard": {
        "shipped": Decoding(loop_guard=LOOP_GUARD),
        "pitch guard": Decoding(loop_guard=LOOP_GUARD, pitch_guard=True),
    },
}
COLLECTIONS = "bach,palestrina,trecento,monteverdi,oneills1850,essenFolksong"


def drift(seed: list[Event], answer: list[Event]) -> list[float]:
    """Voices ratio, top shift, bass shift of `answer` against `seed` (sounding events only)."""
    played, heard = [ev for ev in answer if ev.pitches], [ev for ev in seed if ev.pitches]
    if not played:
        return [0.0, 0.0, 0.0]
    return [
        np.mean([len(ev.pitches) for ev in played]) / np.mean([len(ev.pitches) for ev in heard]),
        np.mean([ev.pitches[-1] for ev in played]) - np.mean([ev.pitches[-1] for ev in heard]),
        np.mean([ev.pitches[0] for ev in played]) - np.mean([ev.pitches[0] for ev in heard]),
    ]


def report(row: str, name: str, seeds: list[list[Event]], continuations: list[list[Event]]):
    """Print the table row of these continuations of these seeds (figures over their second half);
    return their mean drift per stretch of STRETCH events."""
    late, per = [], []
    for seed, after in zip(seeds, continuations):
        second = after[len(after) // 2 :]
        shares = loops(second)
        late.append([*drift(seed, second), shares["loop_8"], shares[PITCH_LOOP]])
        per.append([drift(seed, after[k : k + STRETCH]) for k in range(0, len(after), STRETCH)])
    v, top, bass, loop_share, pitch_loops = np.mean(late, axis=0)
    cells = f"{v:.2f} | {top:+.1f} | {bass:+.1f} | {loop_share:.0%} | {pitch_loops:.0%}"
    print(f"| {row} | {name} | {cells} |", flush=True)
    return np.mean(per, axis=0)


def main(sweep: str, split: str, seeds: int, events: int, collections: list[str]) -> None:
    engine = Engine(None, provider="cpu")
    grid = engine.codec.grid
    corpus = load_corpus(Path("data/music21"), grid)
    _, files, _ = choose_split(engine.info.meta, corpus.files, split)
    notes_of = dict(zip(corpus.files, corpus.notes))
    half = events // 2
    print(
        f"{split} split, {events} events after {SEED}-event seeds; figures over events {half}..{events - 1}\n"
    )
    print("| collection (seeds) | decoding | voices × | top (st) | bass (st) | loops ≤ 8 | pitch loops ≤ 8 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    stretches = {}
    for coll in collections:
        chosen = [f for f in files if collection_of(f) == coll]
        pieces = piece_events([notes_of[f] for f in chosen], grid, [0])
        usable = [p for p in pieces if len(p) >= SEED and usable_seed(p[:SEED])]
        if not usable:
            continue
        picks = [usable[int(i)] for i in np.linspace(0, len(usable) - 1, min(seeds, len(usable))).round()]
        for name, decoding in SWEEPS[sweep].items():
            answers = []
            for piece in picks:
                gen = Generator(engine, decoding)
                gen.prime(piece[:SEED])
                answers.append(gen.generate(events))
            stretches[coll, name] = report(f"{coll} ({len(picks)})", name, [p[:SEED] for p in picks], answers)
        # the music itself, where a piece goes on that long after its seed: what "no drift" looks like
        long = [p for p in usable if len(p) >= SEED + events]
        if long:
            own = [p[SEED : SEED + events] for p in long]
            stretches[coll, "the music"] = report(
                f"{coll} ({len(long)} pieces)", "the music", [p[:SEED] for p in long], own
            )
    print(f"\nPer stretch of {STRETCH} events: voices × / top / bass\n")
    for (coll, name), rows in stretches.items():
        print(f"{coll} {name}: " + " ".join(f"{v:.2f}/{t:+.1f}/{b:+.1f}" for v, t, b in rows))


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] not in SWEEPS:
        sys.exit(
            f"usage: python scripts/long_answers.py {{{','.join(SWEEPS)}}} [SPLIT] [SEEDS] [EVENTS] [COLLS]"
        )
    main(
        args[0],
        args[1] if len(args) > 1 else "validation",
        int(args[2]) if len(args) > 2 else 12,
        int(args[3]) if len(args) > 3 else 512,
        (args[4] if len(args) > 4 else COLLECTIONS).split(","),
    )
