"""Where the daemon's answers and stream fall in time, against the player's: on made-up time,
through the daemon's own Performer (served model and decoding, internal clock, 120 bpm).

    python scripts/live_timing.py [SPLIT] [SEEDS]
        (defaults: validation, 20 seeds a collection)

Seeds: the first 32 events of held-out pieces of bach, palestrina, essenFolksong and oneills1850
(pieces of at least 48 events), played note by note from a random point of the daemon's grid, each
note let go at 95% of its length.
1. `respond`: where the answer's first onset falls against the player's beat (beats counted from
   the phrase's first onset): the median distance in steps.
2. `continue`, after the phrase: of the stream's first 16 onsets after the last note, the median
   distance from the player's sixteenths (in steps), and the share on the piece's beats, beside
   the share of the piece's own next 16 onsets.
3. `continue`, after the phrase played with onset jitter (sd 0.15 step, 19 ms): the stream's first
   16 onsets against the grid the player meant (the unjittered one), median distance in steps.
4. `continue`, while the player plays: 8 trials of 32 steady notes (eighths, then quarters),
   onsets moved by a normal jitter of sd 0.15 of a step (19 ms). The stream's notes heard while
   the player plays: how many, and how many of them sound for under 60 ms (stray notes over the
   player's).

The changes of 27 Nov to when answers and the stream come in (BENCHMARKS.md, "Answers and the
stream in the player's time") were decided on these figures on the validation split. About 1
minute on the 2-core build machine; needs data/music21 (scripts/make_music21_model.sh exports it).
"""

import sys
from dataclasses import replace

import numpy as np
from jittered_phrases import held_out_pieces  # scripts/, beside this one: the same seeds

from midiseed.daemon.config import Config
from midiseed.daemon.core import Performer
from midiseed.daemon.service import Service
from midiseed.daemon.tempo import InternalTempo
from midiseed.runtime.codec import events_to_notes

BPM = 120.0
ONSETS = 16  # stream onsets measured after the phrase
SHORT_SECONDS = 0.06
JITTER = 0.15  # onset jitter, sd in steps (19 ms at 120 bpm)


def run(
    gen,
    notes: list[tuple[float, float, int]],
    until: float,
    mode: str = "continue",
    tempo: InternalTempo | None = None,
    **settings,
) -> list[tuple[float, list[int]]]:
    """Notes (onset, release, pitch in seconds) into a Performer in `mode` (on `tempo`, by default
    its own at BPM; other config `settings` as given) ticked every millisecond of made-up time up to
    `until`; what it sent, with times."""
    out: list[tuple[float, list[int]]] = []
    now = [0.0]
    gen.reset()
    cfg = replace(Config(), mode=mode, bpm=BPM, realtime=False, answer_beats=4, **settings)
    tempo = tempo or InternalTempo(BPM, gen.codec.grid.steps_per_beat, 0.0)
    perf = Performer(cfg, gen, tempo, lambda m: out.append((now[0], list(m))))
    plan = sorted([(a, 1, [0x90, p, 90]) for a, _, p in notes] + [(b, 0, [0x80, p, 0]) for _, b, p in notes])
    i = 0
    while now[0] < until:
        now[0] = round(now[0] + 0.001, 6)
        while i < len(plan) and plan[i][0] <= now[0]:
            perf.handle(plan[i][2], plan[i][0])
            i += 1
        perf.tick(now[0])
    return out


def played(piece, start: float, step: float, jitter=None) -> list[tuple[float, float, int]]:
    """The piece's first 32 events as notes from `start`, each let go at 95% of its length;
    `jitter(onset)`: steps to move each onset (the same for the notes struck together)."""
    notes = events_to_notes(piece[:32]).tolist()
    moved = {a: jitter(a) if jitter else 0.0 for _, a, _ in notes}
    return [
        (start + (a + moved[a]) * step, start + (a + moved[a] + 0.95 * (b - a)) * step, p)
        for p, a, b in notes
    ]


def answers(gen, chosen: dict[str, list], rng) -> None:
    steps_per_beat = gen.codec.grid.steps_per_beat
    step = 60 / BPM / steps_per_beat
    print("respond: the answer's first onset against the player's beat (beats from their first note)")
    for coll, pieces in chosen.items():
        offsets = []
        for piece in pieces:
            start = 0.05 + rng.uniform(0, steps_per_beat) * step
            notes = played(piece, start, step)
            out = run(gen, notes, max(b for _, b, _ in notes) + 6.0, "respond")
            ons = sorted(t for t, m in out if m[0] & 0xF0 == 0x90 and m[2])
            if ons:
                beats = (ons[0] - start) / step / steps_per_beat
                offsets.append(abs(beats - round(beats)) * steps_per_beat)
        print(
            f"  {coll:14s} answers {len(offsets):3d}  off the player's beat (median) "
            f"{np.median(offsets):.3f} step"
        )


def after_a_phrase(gen, chosen: dict[str, list], rng) -> None:
    grid = gen.codec.grid
    step = 60 / BPM / grid.steps_per_beat
    print(f"continue: after a phrase of 32 events, the stream's first {ONSETS} onsets")
    for coll, pieces in chosen.items():
        offsets, on_beat, music = [], [], []
        for piece in pieces:
            start = 0.05 + rng.uniform(0, 1) * step
            notes = played(piece, start, step)
            last = max(a for a, _, _ in notes)
            out = run(gen, notes, last + 8.0)
            ons = sorted({round(t, 4) for t, m in out if t > last + 0.001 and m[0] & 0xF0 == 0x90 and m[2]})[
                :ONSETS
            ]
            steps = [(t - start) / step for t in ons]  # in the piece's own time
            offsets += [abs(s - round(s)) for s in steps]
            on_beat.append(np.mean([round(s) % grid.steps_per_beat == 0 for s in steps]) if steps else np.nan)
            positions = np.cumsum([0] + [ev.steps for ev in piece])
            own = [q for q, ev in zip(positions[32:], piece[32:]) if ev.pitches][:ONSETS]
            music.append(np.mean([q % grid.steps_per_beat == 0 for q in own]) if own else np.nan)
        print(
            f"  {coll:14s} seeds {len(pieces):3d}  off the player's sixteenths (median) "
            f"{np.median(offsets):.3f} step  on the beat: stream {np.nanmean(on_beat):.2f}, "
            f"music {np.nanmean(music):.2f}",
            flush=True,
        )


def after_a_jittered_phrase(gen, chosen: dict[str, list], rng) -> None:
    step = 60 / BPM / gen.codec.grid.steps_per_beat
    print(
        f"continue: after a phrase played with onset jitter sd {JITTER} step, "
        f"the stream's first {ONSETS} onsets"
    )
    for coll, pieces in chosen.items():
        offsets = []
        for piece in pieces:
            start = 0.05 + rng.uniform(0, 1) * step
            notes = played(piece, start, step, lambda a: rng.normal(0, JITTER))
            last = max(a for a, _, _ in notes)
            out = run(gen, notes, last + 8.0)
            ons = sorted({round(t, 4) for t, m in out if t > last + 0.001 and m[0] & 0xF0 == 0x90 and m[2]})
            steps = [(t - start) / step for t in ons[:ONSETS]]  # against the grid the player meant
            offsets += [abs(s - round(s)) for s in steps]
        print(
            f"  {coll:14s} seeds {len(pieces):3d}  off the player's intended sixteenths (median) "
            f"{np.median(offsets):.3f} step",
            flush=True,
        )


def while_playing(gen, rng) -> None:
    step = 60 / BPM / gen.codec.grid.steps_per_beat
    melody = [62, 64, 66, 67, 69, 71, 73, 74]
    print(
        "continue: while the player plays 8 x 32 steady notes (onset jitter sd 0.15 step), the stream's notes"
    )
    for steps, name in ((2, "eighths"), (4, "quarters")):
        total = short = 0
        for _ in range(8):
            start = 0.05 + rng.uniform(0, 1) * step
            onsets = [start + (k * steps + rng.normal(0, 0.15)) * step for k in range(32)]
            notes = [(a, a + 0.95 * steps * step, melody[k % 8]) for k, a in enumerate(onsets)]
            sounding: dict[int, float] = {}
            for t, m in run(gen, notes, onsets[-1]):
                if m[0] & 0xF0 == 0x90 and m[2]:
                    sounding[m[1]] = t
                elif m[1] in sounding and m[0] & 0xF0 in (0x80, 0x90):
                    began = sounding.pop(m[1])
                    if onsets[1] <= t <= onsets[-1]:
                        total += 1
                        short += t - began < SHORT_SECONDS
        print(
            f"  {name:9s} {total:4d} notes, {short:4d} of them under {SHORT_SECONDS * 1000:.0f} ms",
            flush=True,
        )


def main() -> None:
    split = sys.argv[1] if len(sys.argv) > 1 else "validation"
    n_seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    gen = Service._generator(Config())
    chosen = held_out_pieces(gen, split, n_seeds, min_events=48)
    print(split)
    answers(gen, chosen, np.random.default_rng(7))
    after_a_phrase(gen, chosen, np.random.default_rng(22))
    after_a_jittered_phrase(gen, chosen, np.random.default_rng(23))
    while_playing(gen, np.random.default_rng(5))


if __name__ == "__main__":
    main()
