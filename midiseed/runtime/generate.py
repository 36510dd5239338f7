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

MAX_SEED_NOTE_BEATS = 64  # a seed note or rest: no longer than the tokeniser keeps a note (Limits)
RESPELLS = 2  # times an event the loop guard refuses is spelled again before it is let through


def _without(allowed: np.ndarray, tokens) -> np.ndarray:
    """`allowed` less `tokens`, unless that leaves nothing allowed."""
    tokens = list(tokens)
    if not tokens:
        return allowed
    kept = allowed.copy()
    kept[tokens] = False
    return kept if kept.any() else allowed


class Generator:
    """Carries the model state between calls: prime() with what was played, next_event() to answer.

    `steering` (constructor argument, settable at any time) caps voices and bounds the register;
    None (the default) follows the phrase last primed (`Steering.follow`), and with
    `Decoding.anchor`, from that many events of the answer on, holds it where the phrase was
    (`anchored`: the phrase's own register and bass, and the pitch guard on)."""

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
        if hasattr(self, "grammar"):
            self.grammar.steering = self.in_force  # `anchor` may hold it now, or no longer
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
        if self._steering is not None:
            return self._steering
        return self.anchored if self.anchoring else self.followed

    @property
    def anchored(self) -> Steering:
        """What the anchor holds an answer to: the phrase followed, in its own register and bass
        (`Steering.follow(anchor=True)`), worked out when the anchor first asks for it, not at
        every prime (`continue` mode primes at every chord)."""
        if self._anchored is None:
            self._anchored = Steering.follow(self._phrase, self.codec.grid.max_poly, anchor=True)
        return self._anchored

    @property
    def anchoring(self) -> bool:
        """Whether the anchor holds the answer now: it follows the phrase (no steering set by hand)
        and has run `Decoding.anchor` events since it."""
        after = self.decoding.anchor
        return self._steering is None and bool(after) and self.answered >= after

    def reset(self) -> None:
        """Forget everything heard and played (a steering set by hand stays)."""
        self.state = self.engine.zero_state()
        self.followed = Steering()
        self._phrase: Sequence[Event] = ()  # the phrase followed
        self._anchored: Steering | None = Steering()
        self.answered = 0  # events played since the phrase last heard
        self.grammar = Grammar(self.codec, steering=self.in_force)
        self.logits: np.ndarray | None = None
        self.history: list[int] = []
        self.events: list[Event] = []  # the recent events heard and played, for the loop guard
        self.loop_allow: dict[int, int] = {}  # period -> longest run the phrase heard repeated itself
        self.pitch_allow: dict[int, int] = {}  # the same for its pitch content alone
        self.memory.reset()

    def prime(self, events: Sequence[Event], follow: Sequence[Event] | None = None) -> None:
        """Read events (a seed phrase, or notes just played) in one call, on top of the current state.
        A phrase with notes becomes the one followed when `steering` is None: `events` themselves,
        or `follow` when given (`continue` mode reads each chord as it is struck, but follows the
        phrase those chords make)."""
        tokens = self.codec.encode(events)
        if len(tokens) == 0:
            return
        phrase = events if follow is None else follow
        if any(ev.pitches for ev in phrase):
            self.followed = Steering.follow(phrase, self.codec.grid.max_poly)
            self._phrase, self._anchored = tuple(phrase), None
            self.answered = 0
            self.loop_allow = periodic_runs(phrase, self.decoding.loop_guard)
            self.pitch_allow = periodic_runs([ev.pitches for ev in phrase], self.decoding.loop_guard)
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
        With `require_notes`, the event is not a rest (an answer starts with notes, not silence).

        The loop guard (`Decoding.loop_guard`) refuses an event that would carry a loop on too long,
        by changing that event's length. With `Decoding.pitch_guard`, when the answer keeps two
        voices or more (the voice floor is on), it also listens to pitches alone, as an ear does:
        an event that would sound a set of pitches `loop_refusals` refuses, whatever its length, is
        spelled again from its start with another lowest note, up to RESPELLS times; only then does
        the length give way. Chords cycling through the same few sets of notes are then heard as a
        loop even when their lengths vary. A spelling that comes out as a rest, or with fewer notes
        than the voice and chord floors ask (another lowest note can leave too little room below
        the register's top), is not kept: the event is spelled as at first and only its length gives
        way, so the guard never thins the answer."""
        if self.logits is None:
            self.prime([Event((), (), self.codec.grid.steps_per_beat)])  # nothing heard yet: a beat's rest
        d = self.decoding
        refused: set[Event] = set()
        refused_pitches: set[tuple[int, ...]] = set()
        voiced = (d.pitch_guard or self.anchoring) and self.in_force.least >= 2
        if d.loop_guard:
            refused = loop_refusals(self.events, d.loop_guard, self.loop_allow, d.loop_repeats)
            if voiced:
                pitches = [ev.pitches for ev in self.events]
                refused_pitches = loop_refusals(pitches, d.loop_guard, self.pitch_allow, d.loop_repeats)
        start = None  # where a refused spelling starts again from: state, logits, memory
        if voiced and (refused or refused_pitches):
            start = (self.state, self.logits, self.memory.save())
        first_bans: list[int] = []  # struck and held tokens of refused spellings' lowest notes
        respelled = 0
        spelled: list[int] = []  # this event's tokens so far
        thinned = False  # a respelling lost a voice: spell it as at first, let the length give way
        while True:
            allowed = self.grammar.allowed()
            if not spelled:
                if require_notes:
                    allowed &= ~self.grammar.durations
                if not thinned:
                    allowed = _without(allowed, first_bans)
            if self.decoding.no_repeat:
                allowed = _without(
                    allowed, banned_by_no_repeat(self.history, self.decoding.no_repeat, self.decoding.window)
                )
            if refused and start is None:
                allowed = _without(allowed, self._refused_durations(refused))
            scores = self.memory.mix(self.logits)
            token = choose(scores, self.decoding, self.rng, allowed)
            if start is not None and self.codec.is_duration(token):
                ends = self._refused_durations(refused)
                if respelled and not thinned and self._below_floor():  # a rest too: no voices
                    thinned = True
                    self._rewind(start, spelled)
                    spelled = []
                    continue
                pending = tuple(sorted(self.grammar.reader.pending))
                looped = not thinned and (token in ends or pending in refused_pitches)
                if looped and spelled and respelled < RESPELLS:
                    respelled += 1
                    lowest = self.codec.pitch_of(spelled[0])  # spell it again from another lowest note,
                    first_bans += [self.codec.struck(lowest), self.codec.held(lowest)]  # struck or held
                    self._rewind(start, spelled)
                    spelled = []
                    continue
                if token in ends:  # last resort: the same notes, another duration
                    token = choose(scores, self.decoding, self.rng, _without(allowed, ends))
            spelled.append(token)
            if self.memory.weight:
                self.memory.feed(token)
            self.history.append(token)
            if len(self.history) > 4 * self.decoding.window:
                del self.history[: -self.decoding.window]
            event = self.grammar.feed(token)
            self.logits, self.state = self.engine.step(token, self.state)
            if event is not None:
                self._remember([event])
                self.answered += 1
                if self.answered == d.anchor and self._steering is None:
                    self.grammar.steering = self.in_force  # from now on, anchored to the phrase
                return event

    def _refused_durations(self, refused: set[Event]) -> list[int]:
        """The duration tokens that would complete a refused event from the pitches chosen so far."""
        pending = self.grammar.reader.pending
        pitches = tuple(sorted(pending))
        held = tuple(pending[p] for p in pitches)
        return [self.codec.duration(ev.steps) for ev in refused if ev.pitches == pitches and ev.held == held]

    def _below_floor(self) -> bool:
        """Whether the event being spelled has fewer pitches, or strikes fewer, than the floors ask."""
        pending, steer = self.grammar.reader.pending, self.in_force
        return len(pending) < steer.least or sum(not held for held in pending.values()) < steer.fewest

    def _rewind(self, start, spelled: list[int]) -> None:
        """Back to the start of the event being spelled: model state, memory, history, grammar."""
        self.state, self.logits, memory = start
        self.memory.restore(memory)
        if spelled:
            del self.history[-len(spelled) :]
        self.grammar.reader.pending = {}

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
        if beats > MAX_SEED_NOTE_BEATS:
            raise CodecError(f"{word!r} lasts more than {MAX_SEED_NOTE_BEATS} beats")
        if body.lower() == "r":
            events.append(Event((), (), steps))
            continue
        pitches = sorted({parse_note_name(n) for n in body.split("+")})
        events.append(Event(tuple(pitches), (False,) * len(pitches), steps))
    if not events:
        raise CodecError("the seed has no notes (use e.g. --seed-notes 'C4 E4 G4')")
    return events
