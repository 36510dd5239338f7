"""Choosing the next token: greedy by default; temperature, top-k and a no-repeat guard as options.

Pure numpy, shared by `generate`, the daemon and the tests. A grammar mask keeps every choice a
valid spelling of an event (pitches ascending, at most grid.max_poly of them, a held pitch only
if it sounded in the event before), so whatever the decoding, the output is always playable. The
live controls (`Steering`: voices and register) are enforced in the same mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from midiseed.errors import BadValue
from midiseed.runtime.codec import Codec, Event, EventReader
from midiseed.runtime.memory import MAX_MEMORY

# How far the followed register reaches past the phrase's lowest and highest pitch: a perfect
# fourth. A melody's answer may step or leap a little past the call's range, and a phrase of one
# repeated note still leaves an 11-semitone span to move in; but an answer an octave away (the
# chorale model's bass line under a tune) is ruled out.
FOLLOW_MARGIN = 5
# The anchor's register (`Steering.follow(anchor=True)`) is the phrase's own lowest..highest pitch,
# widened to at least this span (never past FOLLOW_MARGIN): a phrase of one chord or one repeated
# note (a key pressed in `continue` mode) must leave a line room to move.
ANCHOR_SPAN = 12
# The voice floor follows the texture the phrase ended with: the thinnest of its last this many
# sounding events before the final one, a release left out. A madrigal's opening adds its voices
# one entry at a time, so the whole phrase's thinnest moment (one voice) would floor nothing; and a
# phrase heard live ends with a release, a chord let go one note at a time over a step or several.
# Chosen on validation (models/MODEL_CARD.md).
VOICE_WINDOW = 8


@dataclass(frozen=True)
class Steering:
    """Live controls the grammar enforces on every event chosen.

    The defaults steer nothing. A pitch held over from before that is now outside the register is
    not held on: it ends at the next event boundary (ending a note is always playable), so a
    register change takes effect within one event.

    `fewest` (2 or more) answers chords with chords: every event that sounds strikes at least that
    many notes and holds none, as a player striking block chords does. `least` (2 or more) keeps
    the voices: every event that sounds has at least that many pitches, struck or held, as a
    four-part chorale keeps its four parts while one of them moves. `shortest` keeps the answer no
    faster than the phrase: an event that strikes a note lasts at least that many grid steps."""

    voices: int = 0  # most pitches sounding at once (struck or held): 0 = no cap, else 1..max_poly
    low: int = 0  # lowest pitch an event may hold or strike (MIDI number)
    high: int = 127  # highest pitch an event may hold or strike
    fewest: int = 0  # fewest notes an event that sounds must strike (none held): 0 or 1 = no floor
    shortest: int = 0  # fewest grid steps an event that strikes a note may last: 0 = no floor
    least: int = 0  # fewest pitches (struck or held) an event that sounds must have: 0 or 1 = no floor
    bass: int = 127  # highest pitch an event's lowest may be: 127 = no ceiling

    def __post_init__(self) -> None:
        if not 0 <= self.voices <= 127:
            raise BadValue(f"voices must be 0 (no cap) or 1..max_poly, got {self.voices}")
        if not 0 <= self.fewest <= (self.voices or 127):
            raise BadValue(f"fewest must be 0 (no floor) up to voices, got {self.fewest} with {self.voices}")
        if not 0 <= self.least <= (self.voices or 127):
            raise BadValue(f"least must be 0 (no floor) up to voices, got {self.least} with {self.voices}")
        if self.shortest < 0:
            raise BadValue(f"shortest must be 0 (no floor) or more grid steps, got {self.shortest}")
        if not 0 <= self.low <= self.high <= 127:
            raise BadValue(
                f"register must satisfy 0 <= low <= high <= 127, got low={self.low} high={self.high}"
            )

    @classmethod
    def follow(
        cls, events: Iterable[Event], max_poly: int = 8, margin: int = FOLLOW_MARGIN, anchor: bool = False
    ) -> Steering:
        """Steering that follows a phrase: as many voices as it sounds at once (at most `max_poly`),
        and no fewer than the thinnest of its last `VOICE_WINDOW` sounding events before the final
        one and its release (`_texture`); its lowest..highest pitch widened by `margin` semitones
        (with `anchor`, only as far as `ANCHOR_SPAN` asks, and with two voices or more a bass
        ceiling at the highest lowest note of those same events); chords struck as thick as its
        thinnest onset (a floor only when every onset struck two notes or more); and events that
        strike no shorter than its shortest such event (its last event left out: a phrase heard
        live ends when the player lets go, not when the beat does). A phrase with no notes steers
        nothing."""
        events = list(events)
        most, fewest, low, high = 0, 128, 128, -1
        for ev in events:
            if ev.pitches:
                most = max(most, len(ev.pitches))
                low, high = min(low, ev.pitches[0]), max(high, ev.pitches[-1])
            struck = ev.held.count(False)
            if struck:
                fewest = min(fewest, struck)
        if not most:
            return cls()
        voices = min(most, max_poly)
        strikes = [ev.steps for ev in events[:-1] if False in ev.held]
        texture = _texture(events)
        least = min(len(ev.pitches) for ev in texture)
        if anchor:
            margin = min(margin, max(0, -(-(ANCHOR_SPAN - (high - low)) // 2)))
        return cls(
            voices,
            max(0, low - margin),
            min(127, high + margin),
            fewest=min(fewest, voices) if fewest > 1 else 0,
            shortest=min(strikes, default=0),
            least=min(least, voices) if least > 1 else 0,
            bass=max(ev.pitches[0] for ev in texture) if anchor and least > 1 else 127,
        )

    def overridden(self, voices: int, low: int, high: int) -> Steering:
        """This steering with voices and register set by hand (config, CC or command line); the
        chord and voice floors and the note-rate floor still follow the phrase. A cap set below the
        phrase's floors brings them down to it: two voices asked of a four-part phrase answer in
        two parts."""
        cap = voices or 127
        return Steering(voices, low, high, min(self.fewest, cap), self.shortest, min(self.least, cap))


def _texture(events: Sequence[Event]) -> list[Event]:
    """The sounding events whose texture the voice floor follows: the last `VOICE_WINDOW` before the
    final one, after a release (events that strike nothing and keep only some of the notes before
    them) is taken off the end; all the sounding ones when that leaves none."""
    body = list(events[:-1])
    while len(body) > 1 and False not in body[-1].held and set(body[-1].pitches) < set(body[-2].pitches):
        body.pop()
    sounding = [ev for ev in body if ev.pitches][-VOICE_WINDOW:]
    return sounding or [ev for ev in events if ev.pitches]


# The loop guard (`Decoding.loop_guard`). Greedy decoding falls into loops: a pattern of a few
# events played again and again, which real music rarely does (on validation seeds 34-41% of the
# shipped default's greedy answers lay in loops, against 1-22% of the music's own continuations).
# The guard lets a pattern of p events run for at most LOOP_REPEATS * p events in a row (once and
# a half: an answer may echo the start of a figure but not play it twice in full), or as long as
# the phrase heard did itself. Chosen on the validation split (models/MODEL_CARD.md).
LOOP_REPEATS = 1.5
LOOP_GUARD = 32  # what `generate` and the daemon use unless told otherwise
MAX_LOOP_GUARD = 64

# The anchor (`Decoding.anchor`). Answers that run on (continue mode, long answers) drift: over 512
# events answering validation seeds, a chorale's bass climbs 19 semitones and its voices thin to
# x0.69, a madrigal's and a motet's bass climbs 17, and an Essen tune rises 7. From `anchor`
# events into an answer that follows the phrase heard, the answer is held where the phrase was: its
# own lowest..highest pitch (widened only to ANCHOR_SPAN), in polyphony an event's lowest note no higher than
# the phrase's bass went (`Steering.bass`), and the pitch guard on. Measured on validation
# (models/MODEL_CARD.md, "Long answers"); an option, off by default.
MAX_ANCHOR = 1024


@dataclass(frozen=True)
class Decoding:
    """How to pick the next token."""

    temperature: float = 0.0  # 0 = greedy (argmax); otherwise sample from softmax(logits / temperature)
    top_k: int = 0  # sample among the k likeliest only (0 = all)
    no_repeat: int = 0  # forbid repeating any token n-gram of this length from the recent output (0 = off)
    window: int = 256  # how many recent tokens the no-repeat guard looks at
    loop_guard: int = 0  # longest pattern, in events, the loop guard keeps from looping (0 = off)
    loop_repeats: float = LOOP_REPEATS  # how many times in a row a pattern may play (at least 1)
    memory: float = 0.0  # weight of the piece's own memory (`midiseed.runtime.memory`); 0 = the network alone
    pitch_guard: bool = False  # with two voices or more, the loop guard also hears pitches alone
    anchor: int = 0  # events into an answer after which it stays where the phrase was (0 = never)

    def __post_init__(self) -> None:
        if not 0 <= self.temperature <= 10:
            raise BadValue(f"temperature must be in 0..10, got {self.temperature}")
        if self.top_k < 0:
            raise BadValue(f"top_k must be 0 or more, got {self.top_k}")
        if self.no_repeat < 0 or self.no_repeat == 1:
            raise BadValue(f"no_repeat must be 0 (off) or 2 or more, got {self.no_repeat}")
        if self.loop_repeats < 1:
            raise BadValue(f"loop_repeats must be 1 or more, got {self.loop_repeats}")
        if not 0 <= self.memory <= MAX_MEMORY:
            raise BadValue(f"memory must be in 0..{MAX_MEMORY} (0 = off), got {self.memory}")
        if not 0 <= self.anchor <= MAX_ANCHOR:
            raise BadValue(f"anchor must be in 0..{MAX_ANCHOR} events (0 = off), got {self.anchor}")
        if not 0 <= self.loop_guard <= MAX_LOOP_GUARD:
            raise BadValue(
                f"loop_guard must be in 0..{MAX_LOOP_GUARD} events (0 = off), got {self.loop_guard}"
            )


class Grammar:
    """Which tokens may come next, given the event being spelled and the one before it.

    A pitch may be held on for at most `max_hold_steps` (two bars by default): greedy decoding
    otherwise likes to sustain one pedal note for ever, which the data never does.

    `steering` (settable at any time) caps the voices and bounds the register. It never
    dead-ends: a floor (`least`, `fewest`) asks for another pitch only while one is allowed, and
    otherwise a duration token is allowed: with no pitch left to choose, the event
    closes."""

    def __init__(
        self, codec: Codec, max_hold_steps: int | None = None, steering: Steering = Steering()
    ) -> None:
        self.codec = codec
        self.reader = EventReader(codec)
        self.sounding: frozenset[int] = frozenset()
        self.max_hold = max_hold_steps or 8 * codec.grid.steps_per_beat
        self.held_for: dict[int, int] = {}  # sounding pitch -> steps it has sounded since struck
        ids = np.arange(len(codec))
        self._dur = np.array([codec.is_duration(t) for t in ids])
        self._steps = np.where(self._dur, ids - codec.duration(0), 0)  # a duration token's grid steps
        self.durations = self._dur  # read-only view for callers that need to forbid a rest
        self._pitch = np.where(self._dur, -1, ids % 128)
        self._held = ~self._dur & (ids >= 128)
        self._pitch_or_held_ok = ~self._held  # a held pitch is allowed only if it sounds: none yet
        self.steering = steering

    @property
    def steering(self) -> Steering:
        """The live controls in force; setting them takes effect from the next token."""
        return self._steering

    @steering.setter
    def steering(self, value: Steering) -> None:
        self._steering = value
        self._cap = min(value.voices or self.codec.grid.max_poly, self.codec.grid.max_poly)
        pitch = self._pitch
        self._in_register = (pitch >= value.low) & (pitch <= value.high)
        self._ok = self._pitch_or_held_ok & self._in_register  # kept combined: allowed() runs per token
        self._dur_long_enough = self._dur & (self._steps >= value.shortest)

    def feed(self, token: int) -> Event | None:
        ev = self.reader.feed(token)
        if ev is not None:
            self.sounding = frozenset(ev.pitches)
            self.held_for = {
                p: ev.steps + (self.held_for.get(p, 0) if h else 0) for p, h in zip(ev.pitches, ev.held)
            }
            may_hold = np.zeros(128, dtype=bool)
            may_hold[[p for p, n in self.held_for.items() if n < self.max_hold]] = True
            self._pitch_or_held_ok = ~self._held | may_hold[self._pitch % 128]  # once per event
            self._ok = self._pitch_or_held_ok & self._in_register
        return ev

    def allowed(self) -> np.ndarray:
        """Boolean mask over the vocabulary."""
        pending = self.reader.pending
        durations = self._dur
        if self._steering.shortest and not all(pending.values()):
            durations = self._dur_long_enough  # an event that strikes: no faster than the phrase heard
        if len(pending) >= self._cap:
            return durations.copy()
        last = max(pending) if pending else -1
        pitches = (self._pitch > last) & self._ok
        if not pending and self._steering.bass < 127:
            low_enough = pitches & (self._pitch <= self._steering.bass)
            if low_enough.any():
                pitches = low_enough  # the lowest voice stays no higher than the phrase's went
        floor = self._steering.least
        if self._steering.fewest > 1:
            # chords with chords: every event that sounds strikes at least `fewest` notes, none held
            # (the voice floor, which counts held notes too, would then ask for more strikes than
            # the phrase made: a bass held under struck chords)
            pitches &= ~self._held
            floor = self._steering.fewest
        if 0 < len(pending) < floor and pitches.any():
            return pitches  # too few voices yet: another pitch, not the end of the event
        return pitches | durations


def banned_by_no_repeat(history: list[int], n: int, window: int) -> set[int]:
    """Tokens that would complete an n-gram already present in the last `window` tokens."""
    if n < 2 or len(history) < n:
        return set()
    recent = history[-window:]
    prefix = recent[-(n - 1) :]
    banned = set()
    for i in range(len(recent) - n + 1):
        if recent[i : i + n - 1] == prefix:
            banned.add(recent[i + n - 1])
    return banned


def periodic_runs(events: Sequence[Event], max_period: int) -> dict[int, int]:
    """For each period p <= max_period, the longest stretch of `events` that repeats with period p
    at least twice in full (2p events or more); periods with no such stretch are left out."""
    runs: dict[int, int] = {}
    n = len(events)
    for p in range(1, min(max_period, n // 2) + 1):
        k = best = 0
        for j in range(p, n):
            k = k + 1 if events[j] == events[j - p] else 0
            best = max(best, k)
        if best >= p:
            runs[p] = best + p
    return runs


def loop_refusals(
    events: Sequence[Event],
    max_period: int,
    allow: dict[int, int] | None = None,
    repeats: float = LOOP_REPEATS,
) -> set[Event]:
    """Events that would stretch a loop past its allowance.

    For each period p <= max_period, the run of events that repeats with period p up to now is
    p events plus the trailing positions j with events[j] == events[j - p]. Playing events[-p]
    next lengthens it by one; that event is refused when the run would then be longer than
    max(repeats * p, allow[p]) events (`allow`: the runs the phrase heard played, `periodic_runs`)."""
    n = len(events)
    allow = allow or {}
    refused: set[Event] = set()
    for p in range(1, min(max_period, n) + 1):
        k = 0
        while k < n - p and events[n - 1 - k] == events[n - 1 - k - p]:
            k += 1
        if p + k + 1 > max(repeats * p, allow.get(p, 0)):
            refused.add(events[n - p])
    return refused


def choose(logits: np.ndarray, decoding: Decoding, rng: np.random.Generator, allowed: np.ndarray) -> int:
    """The next token id from one row of logits, among the allowed ones."""
    if decoding.temperature == 0:
        return int(np.argmax(np.where(allowed, logits, -np.inf)))
    scores = np.where(allowed, logits.astype(np.float64), -np.inf)
    if decoding.top_k:
        k = min(decoding.top_k, int(allowed.sum()))
        cutoff = np.partition(scores, -k)[-k]
        scores = np.where(scores >= cutoff, scores, -np.inf)
    scores = scores / decoding.temperature
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    return int(rng.choice(len(probs), p=probs))
