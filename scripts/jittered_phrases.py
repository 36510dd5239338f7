"""How live phrases are read: held-out seeds played with human timing into the daemon's Listener,
read as a respond-mode phrase, and answered as served.

    python scripts/jittered_phrases.py [--daemon-grid] [--fixed-tempo] [--tempo=F]
        [SPLIT] [SEEDS] [TRIALS] [JITTER]
        (defaults: validation, 20 seeds a collection, 10 trials a seed, jitter sd 0.15 of a step,
        played at the daemon's tempo: F = 1)

Each seed (the first 32 events of a held-out piece of bach, palestrina, essenFolksong and
oneills1850, and the README's 8-chord chorale phrase) is played TRIALS times: every onset moved by
a normal jitter (sd JITTER steps; 0.15 is 19 ms at 120 bpm), the phrase started at a random point of
the grid, each note let go at 95% of its length (the README phrase: 0.48 s of each 0.5 s chord, as
its live check plays it). The Listener reads it as the daemon would with its internal clock (a grid
phased to fit the phrase's onsets; `--daemon-grid`: on the daemon's own grid, as before 27 Nov), and the
served generator answers it: 64 events (the README phrase: 8, as its answer lasts). `--tempo=F`
plays every phrase F times as fast as the daemon's tempo (jitter in the player's steps); the
Listener follows the tempo as the daemon does (`follow_tempo`), or not with `--fixed-tempo`.

Printed per collection: answers, how many collapsed (at most 2 distinct chords), and the medians of
the texture and rhythm factors and the in-key share against the seed as played without jitter
(`midiseed.evaluate.follow.compare`); how many phrases were read right (every gap between onsets,
in steps, as written), and the median rhythm factor in time (the answer's median gap in seconds,
at the tempo it plays, against the seed's as played). The rules behind the Listener's legato,
re-strike and grid choices and its following the tempo (27 Nov) were decided on these figures on
the validation split (BENCHMARKS.md, "Live phrases read as played"). About 1 minute a run on the
2-core build machine.
"""

import sys
from pathlib import Path

import numpy as np

from midiseed.daemon.config import Config
from midiseed.daemon.listener import Listener
from midiseed.daemon.service import Service
from midiseed.evaluate import choose_split, collection_of
from midiseed.evaluate.follow import compare, factor, median_gap, usable_seed
from midiseed.runtime.codec import Event, events_to_notes
from midiseed.training.corpus import load_corpus
from midiseed.training.dataset import piece_events

COLLECTIONS = ("bach", "palestrina", "essenFolksong", "oneills1850")
README_PHRASE = [(55, 59, 62, 67), (55, 59, 62, 67), (57, 60, 64, 69), (59, 62, 67, 71)]
README_PHRASE += [(60, 64, 67, 72), (57, 60, 64, 69), (62, 66, 69, 74), (50, 57, 66, 74)]
STEP_SECONDS = 0.125  # 120 bpm, sixteenths


def play(
    listener: Listener, notes: list, phase: float, jitter: dict, held: float | None, tempo: float = 1.0
) -> None:
    """Notes (pitch, start, end in steps) into the listener: onsets moved by `jitter`, each let go at
    95% of its length, or `held` steps after its onset; at `tempo` times the listener's tempo."""
    messages = []
    for pitch, start, end in notes:
        on = phase + (start + jitter[start]) / tempo
        messages += [(on, 1, pitch), (on + (held if held else 0.95 * (end - start)) / tempo, 0, pitch)]
    for pos, is_on, pitch in sorted(messages, key=lambda m: (m[0], m[1])):
        if is_on:
            listener.note_on(0, pitch, 90, pos * STEP_SECONDS, pos)
        else:
            listener.note_off(0, pitch, pos * STEP_SECONDS, pos)


def held_out_pieces(gen, split: str, n_seeds: int, min_events: int = 32) -> dict[str, list]:
    """Per collection of COLLECTIONS, the first `n_seeds` pieces of `split` (of the model's split of
    data/music21) with at least `min_events` events whose first 32 make a usable seed."""
    grid = gen.codec.grid
    corpus = load_corpus(Path("data/music21"), grid)
    _, files, _ = choose_split(gen.engine.info.meta, corpus.files, split)
    notes_of = dict(zip(corpus.files, corpus.notes))
    chosen = {}
    for coll in COLLECTIONS:
        pieces = piece_events([notes_of[f] for f in files if collection_of(f) == coll], grid, [0])
        chosen[coll] = [p for p in pieces if len(p) >= min_events and usable_seed(p[:32])][:n_seeds]
    return chosen


def gaps(events: list[Event]) -> list[int]:
    """The steps between successive onsets."""
    return np.diff(sorted({start for _, start, _ in events_to_notes(events).tolist()})).tolist()


def main() -> None:
    flags = {a for a in sys.argv[1:] if a.startswith("--") and "=" not in a}
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    tempo = float(next((a.split("=")[1] for a in sys.argv[1:] if a.startswith("--tempo=")), 1.0))
    own_grid = "--daemon-grid" not in flags
    follow = own_grid and "--fixed-tempo" not in flags
    split = args[0] if args else "validation"
    n_seeds = int(args[1]) if len(args) > 1 else 20
    trials = int(args[2]) if len(args) > 2 else 10
    sd = float(args[3]) if len(args) > 3 else 0.15
    gen = Service._generator(Config())
    grid = gen.codec.grid
    seeds = {coll: [p[:32] for p in pieces] for coll, pieces in held_out_pieces(gen, split, n_seeds).items()}
    seeds["readme"] = [[Event(chord, (False,) * 4, 4) for chord in README_PHRASE]]
    rng = np.random.default_rng(21)
    print(
        f"{split}, jitter sd {sd} step, grid: {'the phrase' if own_grid else 'the daemon'}'s own, "
        f"played at {tempo:g} x the daemon's tempo, {'followed' if follow else 'not followed'}"
    )
    for coll, chosen in seeds.items():
        readme = coll == "readme"
        rows, collapsed, right, in_time = [], 0, 0, []
        for seed in chosen:
            notes = events_to_notes(seed).tolist()
            for _ in range(20 * trials if readme else trials):
                starts = sorted({start for _, start, _ in notes})
                jitter = dict(zip(starts, rng.normal(0, sd, size=len(starts))))
                listener = Listener(grid, 0.03, own_grid=own_grid, follow_tempo=follow)
                play(listener, notes, rng.uniform(0, 1), jitter, 3.84 if readme else None, tempo)
                events, _ = listener.take_phrase()
                right += gaps(events) == gaps(seed)
                gen.reset()
                gen.prime(events)
                answer = gen.generate(8 if readme else 64)
                collapsed += len({ev.pitches for ev in answer if ev.pitches}) <= 2
                rows.append(compare(seed, answer))
                # the answer's median gap in seconds (at the tempo it plays: the one the phrase was
                # read at) against the seed's as played
                gap_answer, gap_seed = median_gap(answer), median_gap(seed)
                if gap_answer and gap_seed:
                    in_time.append(factor(gap_answer / listener.factor, gap_seed / tempo))
        medians = {
            k: np.median([r[k] for r in rows if r[k] is not None]) for k in ("texture", "rhythm", "in_key")
        }
        print(
            f"{coll:14s} answers {len(rows):4d} collapsed {collapsed:4d}  texture {medians['texture']:.2f} "
            f"rhythm {medians['rhythm']:.2f} in_key {medians['in_key']:.2f}  read right {right:4d} "
            f"rhythm in time {np.median(in_time):.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
