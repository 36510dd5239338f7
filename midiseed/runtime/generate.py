"""The generation engine: read a seed in one call, then one step per token, event by event.

Used by `midiseed generate` offline and by the daemon live; only numpy and the Engine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from midiseed.runtime.codec import CodecError, Event, parse_note_name
from midiseed.runtime.engine import Engine
from midiseed.runtime.memory import Memory
from midiseed.runtime.sampling import (
    MAX_LOOP_GUARD,
    Decoding,
    Grammar,
    Steering,
    banned_by_no_repeat,
    choose,
    loop_refusals,
    periodic_runs,
)


class Generator:
    """Carries the model state between calls: prime() with what was played, next_event() to answer.

    `steering` (constructor argument, settable at any time) caps voices and bounds the register;
    None (the default) follows the phrase last primed (`Steering.follow`)."""

    def __init__(
        self, engine: Engine, decoding: Decoding = Decoding(), seed: int = 0, steering: Steering | None = None
    ) -> None:
        self.engine = engine
        self.codec = engine.codec
        self.memory = Memory(len(engine.codec), decoding.memory)
        self.decoding = decoding
        self.rng = np.random.default_rng(seed)
        self._steering = steering
        self.followed = Steering()  # what following the last phrase primed gives
        self.reset()

    @property
    def decoding(self) -> Decoding:
        """How tokens are chosen; settable at any time (the memory's weight follows)."""
        return self._decoding

    @decoding.setter
    def decoding(self, value: Decoding) -> None:
        switched_on = value.memory and not self.memory.weight
        self._decoding = value
        self.memory.weight = value.memory
        if switched_on and hasattr(self, "history"):  # it is fed only while on: catch up on the phrase
            self.memory.reset()
            for t in self.history:
                self.memory.feed(t)

    @property
    def steering(self) -> Steering | None:
        """The steering asked for: a Steering, or None to follow the phrase heard."""
        return self._steering

    @steering.setter
    def steering(self, value: Steering | None) -> None:
        self._steering = value
        self.grammar.steering = self.in_force

    @property
    def in_force(self) -> Steering:
        """The steering the grammar enforces now."""
        return self.followed if self._steering is None else self._steering

    def reset(self) -> None:
        """Forget everything heard and played (a steering set by hand stays)."""
        self.state = self.engine.zero_state()
        self.followed = Steering()
        self.grammar = Grammar(self.codec, steering=self.in_force)
        self.logits: np.ndarray | None = None
        self.history: list[int] = []
        self.events: list[Event] = []  # the recent events heard and played, for the loop guard
        self.loop_allow: dict[int, int] = {}  # period -> longest run the phrase heard repeated itself
        self.memory.reset()

    def prime(self, events: Sequence[Event]) -> None:
        """Read events (a seed phrase, or notes just played) in one call, on top of the current state.
        A phrase with notes becomes the one followed when `steering` is None."""
        tokens = self.codec.encode(events)
        if len(tokens) == 0:
            return
        if any(ev.pitches for ev in events):
            self.followed = Steering.follow(events, self.codec.grid.max_poly)
            self.loop_allow = periodic_runs(events, self.decoding.loop_guard)
            self.grammar.steering = self.in_force
        logits, self.state = self.engine.run(tokens[None, :], self.state)
        self.logits = logits[0, -1]
        for t in tokens.tolist():
            self.grammar.feed(t)
            if self.memory.weight:
                self.memory.feed(t)
        self.history.extend(tokens.tolist())
        self._remember(events)

    def _remember(self, events: Sequence[Event]) -> None:
        self.events.extend(events)
        keep = 2 * MAX_LOOP_GUARD
        if len(self.events) > 2 * keep:
            del self.events[:-keep]

    def next_event(self, require_notes: bool = False) -> Event:
        """Choose tokens until one event is complete; the model steps once per token.
        With `require_notes`, the event is not a rest (an answer starts with notes, not silence)."""
        if self.logits is None:
            self.prime([Event((), (), self.codec.grid.steps_per_beat)])  # nothing heard yet: a beat's rest
        d = self.decoding
        refused = (
            loop_refusals(self.events, d.loop_guard, self.loop_allow, d.loop_repeats)
            if d.loop_guard
            else set()
        )
        while True:
            allowed = self.grammar.allowed()
            if require_notes and not self.grammar.reader.pending:
                allowed &= ~self.grammar.durations
            if self.decoding.no_repeat:
                banned = banned_by_no_repeat(self.history, self.decoding.no_repeat, self.decoding.window)
                guarded = allowed.copy()
                guarded[list(banned)] = False
                if guarded.any():
                    allowed = guarded
            if refused:
                allowed = self._refuse(allowed, refused)
            token = choose(self.memory.mix(self.logits), self.decoding, self.rng, allowed)
            if self.memory.weight:
                self.memory.feed(token)
            self.history.append(token)
            if len(self.history) > 4 * self.decoding.window:
                del self.history[: -self.decoding.window]
            event = self.grammar.feed(token)
            self.logits, self.state = self.engine.step(token, self.state)
            if event is not None:
                self._remember([event])
                return event

    def _refuse(self, allowed: np.ndarray, refused: set[Event]) -> np.ndarray:
        """`allowed` less the durations that would complete a refused event from the pitches chosen
        so far (unchanged if that leaves nothing)."""
        pending = self.grammar.reader.pending
        pitches = tuple(sorted(pending))
        held = tuple(pending[p] for p in pitches)
        ends = [self.codec.duration(ev.steps) for ev in refused if ev.pitches == pitches and ev.held == held]
        if not ends:
            return allowed
        guarded = allowed.copy()
        guarded[ends] = False
        return guarded if guarded.any() else allowed

    def generate(self, n_events: int) -> list[Event]:
        return [self.next_event() for _ in range(n_events)]


def parse_seed_notes(text: str, steps_per_beat: int) -> list[Event]:
    """'C4 E4 G4' (one beat each), 'C4+E4+G4' (a chord), 'C4:2' (two beats), 'r' (a beat's rest)."""
    events = []
    for word in text.split():
        body, _, beats_text = word.partition(":")
        try:
            beats = float(beats_text) if beats_text else 1.0
        except ValueError as err:
            raise CodecError(f"bad length in {word!r}: use e.g. C4:2 or C4:0.5") from err
        steps = round(beats * steps_per_beat)
        if steps < 1:
            raise CodecError(f"{word!r} is shorter than one grid step")
        if body.lower() == "r":
            events.append(Event((), (), steps))
            continue
        pitches = sorted({parse_note_name(n) for n in body.split("+")})
        events.append(Event(tuple(pitches), (False,) * len(pitches), steps))
    if not events:
        raise CodecError("the seed has no notes (use e.g. --seed-notes 'C4 E4 G4')")
    return events
