"""respond mode with the player away from the daemon's tempo: where the answer falls in their time.
On made-up time, through the daemon's own Performer (served model and decoding, internal clock,
the daemon at 120 bpm).

    python scripts/tempo_following.py [SPLIT] [SEEDS]
        (defaults: validation, 20 seeds a collection)

Seeds: the first 32 events of held-out pieces of bach, palestrina, essenFolksong and oneills1850
(pieces of at least 48 events, as scripts/live_timing.py takes them), played note by note at 96,
108, 120, 132 and 150 bpm from a random point of the daemon's grid, every onset moved by a normal
jitter of sd 0.15 of the player's step, each note let go at 95% of its length; then answered for
4 beats, with `follow_tempo` off (every phrase read and answered at 120) and on (the default).
Printed per tempo: the answer's first onset against the player's beat (beats counted from their
first note: median and 90th percentile, in the player's sixteenths), the median distance of the
answer's onsets from the player's sixteenths, and the tempo playing after the answer (median).
The choices of 27 Nov about following the tempo were decided on these figures on the validation
split (BENCHMARKS.md, "A phrase played away from the daemon's tempo"). About 3 minutes on the
2-core build machine; needs data/music21.
"""

import sys

import live_timing  # scripts/, beside this one: the same Performer on made-up time
import numpy as np
from jittered_phrases import held_out_pieces  # and the same seeds
from live_timing import BPM, played  # the daemon's tempo: 120

from midiseed.daemon.config import Config
from midiseed.daemon.service import Service
from midiseed.daemon.tempo import InternalTempo

PLAYERS = (96, 108, 120, 132, 150)  # the player's tempos


def run(gen, notes: list[tuple[float, float, int]], until: float, follow: bool) -> tuple[list[float], float]:
    """Notes (onset, release, pitch in seconds) into a respond-mode Performer (live_timing.run):
    the times of the note-ons it sent, and its tempo after."""
    tempo = InternalTempo(BPM, gen.codec.grid.steps_per_beat, 0.0)
    out = live_timing.run(gen, notes, until, "respond", tempo, follow_tempo=follow)
    return [t for t, m in out if m[0] & 0xF0 == 0x90 and m[2]], tempo.bpm


def main() -> None:
    split = sys.argv[1] if len(sys.argv) > 1 else "validation"
    n_seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    gen = Service._generator(Config())
    chosen = held_out_pieces(gen, split, n_seeds, min_events=48)
    spb = gen.codec.grid.steps_per_beat
    rng = np.random.default_rng(7)
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
