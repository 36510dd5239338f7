"""`continue` mode as a player meets it, on made-up time: a phrase played note by note into the
daemon's own Performer, and what it streams after the last chord.

No ports and no sleeps: the Performer's `handle` and `tick` are called as the service would call
them, a millisecond apart, so its listener, chord window, re-seeding and planning all run as live.
Used by `python -m midiseed.bench.newuser --live` and `scripts/decoding_sweep.py ... continue`.
"""

from __future__ import annotations

from dataclasses import replace

from midiseed.daemon.config import Config
from midiseed.daemon.core import Performer
from midiseed.daemon.tempo import InternalTempo
from midiseed.runtime.codec import Event, events_to_notes
from midiseed.runtime.generate import Generator

TICK_SECONDS = 0.001
LEGATO = 0.95  # a note is let go this far through its length
GIVE_UP_SECONDS = 600.0  # made-up time after the phrase: a stream that never comes is an error


def stream_live(gen: Generator, phrase: list[Event], events: int = 64, bpm: float = 120.0) -> list[Event]:
    """Play `phrase` (events on the generator's grid) note by note at `bpm` into a Performer in
    `continue` mode around `gen` (its decoding, following the phrase heard), and return the first
    `events` events it streams from the last chord read on (what it planned after reading it)."""
    cfg = replace(Config(), mode="continue", bpm=bpm, realtime=False)
    grid = gen.codec.grid
    perf = Performer(cfg, gen, InternalTempo(bpm, grid.steps_per_beat, 0.0), lambda m: None)
    step = 60 / bpm / grid.steps_per_beat
    notes = events_to_notes(phrase)
    plan = []  # (time, offs first, message)
    for pitch, start, end in notes.tolist():
        on = 0.1 + start * step
        plan += [(on, 1, [0x90, pitch, 90]), (on + LEGATO * (end - start) * step, 0, [0x80, pitch, 0])]
    plan.sort()
    chords = len({start for _, start, _ in notes.tolist()})  # each onset a group the Performer reads
    played: list[Event] = []
    # len(played) at each chord read: where the Performer re-seeds (it may prime more than once)
    marks: list[int] = []
    choose, reseed = gen.next_event, perf._reseed

    def next_event(require_notes: bool = False) -> Event:
        played.append(choose(require_notes=require_notes))
        return played[-1]

    def read_chord(*args) -> None:
        marks.append(len(played))
        reseed(*args)

    gen.next_event, perf._reseed = next_event, read_chord
    try:
        now, i, last = 0.0, 0, (plan[-1][0] if plan else 0.0)
        while len(marks) < chords or len(played) < marks[-1] + events:
            now = round(now + TICK_SECONDS, 6)
            if now > last + GIVE_UP_SECONDS:
                raise RuntimeError(
                    f"continue mode read {len(marks)} of {chords} chords and streamed {len(played)} events"
                )
            while i < len(plan) and plan[i][0] <= now:
                perf.handle(plan[i][2], plan[i][0])
                i += 1
            perf.tick(now)
    finally:
        del gen.next_event  # the instance attribute goes: the generator is itself again
    start = marks[chords - 1]  # what was planned before came from the chords before the last
    return played[start : start + events]
