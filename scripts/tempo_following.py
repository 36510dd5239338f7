"""The player away from the daemon's tempo: where the answer (respond mode) or the stream (continue
mode) falls in their time. On made-up time, through the daemon's own Performer (served model and
decoding, internal clock, the daemon at 120 bpm).

    python scripts/tempo_following.py [SPLIT] [SEEDS] [MODE]
        (defaults: validation, 20 seeds a collection, respond)

Seeds: the first 32 events of held-out pieces of bach, palestrina, essenFolksong and oneills1850
(pieces of at least 48 events, as scripts/live_timing.py takes them), played note by note at 96,
108, 120, 132 and 150 bpm from a random point of the daemon's grid, every onset moved by a normal
jitter of sd 0.15 of the player's step, each note let go at 95% of its length; then answered for
4 beats (respond) or streamed on after their last note (continue), with `follow_tempo` off (every
phrase read and answered at 120) and on (the default).
Printed per tempo, respond: the answer's first onset against the player's beat (beats counted from
their first note: median and 90th percentile, in the player's sixteenths), the median distance of
the answer's onsets from the player's sixteenths, and the tempo playing after the answer (median).
Continue: of the stream's first 16 onsets after the player's last note, the median distance from
the sixteenths the player meant (their unjittered grid, in their steps), and the share of the gaps
between them (after the first, which waits a chord window for the player) within 0.1 of a whole
number of their steps; the stream's rhythm in time (its median gap between onsets in seconds over
the seed's, as a factor max(r, 1/r): median over seeds; where the model streams another note value
than the seed's, a stream at the wrong tempo can come out nearer 1); the share of trials that end
within 1% of 120 bpm; the tempo after (median).
The choices of 27 Nov about following the tempo were decided on these figures on the validation
split (BENCHMARKS.md, "A phrase played away from the daemon's tempo"). About 3 minutes on the
2-core build machine; needs data/music21.
"""

import sys

import live_timing  # scripts/, beside this one: the same Performer on made-up time
import numpy as np
from jittered_phrases import held_out_pieces  # and the same seeds
from live_timing import BPM, JITTER, ONSETS, played  # the daemon's tempo: 120

from midiseed.daemon.config import Config
from midiseed.daemon.service import Service
from midiseed.daemon.tempo import InternalTempo
from midiseed.runtime.codec import events_to_notes

PLAYERS = (96, 108, 120, 132, 150)  # the player's tempos


def run(
    gen, notes: list[tuple[float, float, int]], until: float, follow: bool, mode: str = "respond"
) -> tuple[list[float], float]:
    """Notes (onset, release, pitch in seconds) into a Performer in `mode` (live_timing.run): the
    times of the note-ons it sent, and its tempo after."""
    tempo = InternalTempo(BPM, gen.codec.grid.steps_per_beat, 0.0)
    out = live_timing.run(gen, notes, until, mode, tempo, follow_tempo=follow)
    return [t for t, m in out if m[0] & 0xF0 == 0x90 and m[2]], tempo.bpm


def streams(gen, chosen: dict[str, list], seed: int) -> None:
    """Continue mode: the stream after the player's last note, in their time (each trial played
    alike with following on and off: a paired comparison)."""
    spb = gen.codec.grid.steps_per_beat
    for bpm in PLAYERS:
        step = 60 / bpm / spb
        for follow in (False, True):
            offsets, rhythm, whole, kept, tempos = [], [], [], [], []
            for i, piece in enumerate(piece for pieces in chosen.values() for piece in pieces):
                draw = np.random.default_rng([seed, bpm, i])  # the same draws followed or not
                start = 0.05 + draw.uniform(0, spb) * step
                notes = played(piece, start, step, lambda a, draw=draw: draw.normal(0, JITTER))
                last = max(a for a, _, _ in notes)
                ons, tempo = run(gen, notes, last + 8 * 60 / bpm, follow, "continue")
                ons = sorted({round(t, 4) for t in ons if t > last + 0.001})[:ONSETS]
                tempos.append(tempo)
                kept.append(abs(tempo / BPM - 1) < 0.01)
                if len(ons) < 2:
                    continue
                at = [(t - start) / step for t in ons]  # in the player's steps, from their grid
                offsets += [abs(s - round(s)) for s in at]
                whole += [abs(g - round(g)) < 0.1 for g in np.diff(at)[1:]]  # the first waits
                meant = np.unique(events_to_notes(piece[:32])[:, 1])
                r = np.median(np.diff(ons)) / (np.median(np.diff(meant)) * step)
                rhythm.append(max(r, 1 / r))
            print(
                f"  player at {bpm} bpm, {'followed' if follow else 'fixed   '}: trials {len(tempos)}, "
                f"stream off their sixteenths {np.median(offsets):.3f}, gaps in their steps "
                f"{np.mean(whole):.2f}, rhythm in time x "
                f"{np.median(rhythm):.2f}, tempo within 1% of 120 {np.mean(kept):.2f}, "
                f"tempo after {np.median(tempos):.1f}",
                flush=True,
            )


def main() -> None:
    split = sys.argv[1] if len(sys.argv) > 1 else "validation"
    n_seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    mode = sys.argv[3] if len(sys.argv) > 3 else "respond"
    gen = Service._generator(Config())
    chosen = held_out_pieces(gen, split, n_seeds, min_events=48)
    spb = gen.codec.grid.steps_per_beat
    rng = np.random.default_rng(7)
    if mode == "continue":
        print(f"{split}: continue mode, the daemon at {BPM:g} bpm; distances in the player's sixteenths")
        streams(gen, chosen, 7)
        return
    print(f"{split}: the daemon at {BPM:g} bpm; distances in the player's sixteenths")
    for bpm in PLAYERS:
        step = 60 / bpm / spb
        for follow in (False, True):
            first, sixteenths, tempos = [], [], []
            for pieces in chosen.values():
                for piece in pieces:
                    start = 0.05 + rng.uniform(0, spb) * step
                    notes = played(piece, start, step, lambda a: rng.normal(0, 0.15))
                    ons, tempo = run(gen, notes, max(b for _, b, _ in notes) + 8 * 60 / bpm, follow)
                    if not ons:
                        continue
                    beats = (ons[0] - start) / step / spb
                    first.append(abs(beats - round(beats)) * spb)
                    at = [(t - start) / step for t in ons]
                    sixteenths.append(np.median([abs(s - round(s)) for s in at]))
                    tempos.append(tempo)
            print(
                f"  player at {bpm} bpm, {'followed' if follow else 'fixed   '}: answers {len(first)}, "
                f"first onset off their beat {np.median(first):.3f} (90th percentile "
                f"{np.quantile(first, 0.9):.3f}), onsets off their sixteenths {np.median(sixteenths):.3f}, "
                f"tempo after {np.median(tempos):.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
