"""Where we are in musical time: grid position (in steps) <-> wall-clock seconds.

Everything the daemon plans is placed on the grid, never in seconds; the tempo source turns a
position into a time at the last moment, so a tempo change (or a DAW's clock ramp) moves every
planned note with it.
"""

from __future__ import annotations

import math
from collections import deque

CLOCKS_PER_BEAT = 24  # MIDI clock: 24 pulses per quarter note
MIN_BPM, MAX_BPM = 20.0, 400.0


class InternalTempo:
    """A steady tempo of our own, changeable at any moment without a jump in position."""

    running = True

    def __init__(self, bpm: float, steps_per_beat: int, t0: float) -> None:
        self.steps_per_beat = steps_per_beat
        self._anchor_t, self._anchor_pos = t0, 0.0
        self.bpm = bpm
        self.followed = False  # the tempo is the one the player last played at, not the configured

    @property
    def source(self) -> str:
        return "the player's" if self.followed else "internal"

    def set_bpm(self, bpm: float, t: float, followed: bool = False) -> None:
        self._anchor_pos, self._anchor_t = self.position(t), t
        self.bpm, self.followed = bpm, followed

    @property
    def step_seconds(self) -> float:
        return 60.0 / (self.bpm * self.steps_per_beat)

    def position(self, t: float) -> float:
        return self._anchor_pos + (t - self._anchor_t) / self.step_seconds

    def time_of(self, pos: float) -> float:
        return self._anchor_t + (pos - self._anchor_pos) * self.step_seconds

    def on_message(self, kind: str, t: float, value: int = 0) -> str | None:
        return None  # MIDI clock messages mean nothing to our own tempo


class MidiClockTempo:
    """Follows a MIDI clock: 24 pulses a beat, Start/Stop/Continue and Song Position Pointer.

    The first pulse after Start is position 0 (the MIDI spec's downbeat). Position advances
    only while the transport runs; between pulses it is extrapolated at the current tempo but
    never reaches the next pulse, so a note due on a pulse goes out when that pulse arrives,
    never ahead of the DAW.
    Every pulse counts, bunched or not; only a flood (a beat's worth of pulses in less than half
    a beat at 400 bpm) is dropped and counted.
    """

    source = "midi clock"

    def __init__(self, steps_per_beat: int, bpm_guess: float = 120.0) -> None:
        self.steps_per_beat = steps_per_beat
        self.clocks_per_step = CLOCKS_PER_BEAT / steps_per_beat
        self.running = False
        self.pulses = 0  # since Start (or as set by Song Position)
        self.last_pulse_t: float | None = None
        self.recent: deque[float] = deque(maxlen=CLOCKS_PER_BEAT)  # arrival times of the last pulses
        self.pulse_seconds = 60.0 / (bpm_guess * CLOCKS_PER_BEAT)
        self.dropped = 0

    @property
    def bpm(self) -> float:
        return 60.0 / (self.pulse_seconds * CLOCKS_PER_BEAT)

    @property
    def step_seconds(self) -> float:
        return self.pulse_seconds * self.clocks_per_step

    def position(self, t: float) -> float:
        pulses = float(max(self.pulses, 0))
        if self.running and self.last_pulse_t is not None and self.pulses >= 0:
            pulses += min(0.999, max(0.0, (t - self.last_pulse_t) / self.pulse_seconds))
        return pulses / self.clocks_per_step

    def time_of(self, pos: float) -> float:
        base = self.last_pulse_t if self.last_pulse_t is not None else 0.0
        if not self.running:
            return math.inf
        return base + (pos * self.clocks_per_step - self.pulses) * self.pulse_seconds

    def on_message(self, kind: str, t: float, value: int = 0) -> str | None:
        """Apply one transport message; returns "start", "stop" or "continue" when the transport changes."""
        if kind == "clock":
            recent = self.recent
            if len(recent) == recent.maxlen and t - recent[0] < 60.0 / (2 * MAX_BPM):
                # a beat's worth of pulses in less than half a beat at the fastest tempo: a flood
                self.dropped += 1
                return None
            if self.last_pulse_t is not None and t - self.last_pulse_t > 60.0 / (MIN_BPM * CLOCKS_PER_BEAT):
                recent.clear()  # a pause is not a tempo
            recent.append(t)
            if len(recent) >= 3:
                # the span of the last pulses: steady when JACK or USB delivers them in bunches
                window = list(recent)[-7:]
                self.pulse_seconds = max(1e-4, (window[-1] - window[0]) / (len(window) - 1))
            self.last_pulse_t = t
            if self.running:
                self.pulses += 1
            return None
        if kind == "start":
            self.running, self.pulses, self.last_pulse_t = True, -1, None  # the next pulse is 0
            return "start"
        if kind == "continue":
            self.running, self.last_pulse_t = True, t
            return "continue"
        if kind == "stop":
            self.running = False
            return "stop"
        if kind == "songpos":
            self.pulses = value * 6 - 1  # Song Position counts sixteenths (6 pulses); the next pulse is there
            return None
        return None
