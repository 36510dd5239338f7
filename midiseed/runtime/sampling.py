"""Choosing the next token: greedy by default; temperature, top-k and a no-repeat guard as options.

Pure numpy, shared by `generate`, the daemon and the tests. A grammar mask keeps every choice a
valid spelling of an event (pitches ascending, at most grid.max_poly of them, a held pitch only
if it sounded in the event before), so whatever the decoding, the output is always playable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from midiseed.errors import BadValue
from midiseed.runtime.codec import Codec, Event, EventReader


@dataclass(frozen=True)
class Decoding:
    """How to pick the next token."""

    temperature: float = 0.0  # 0 = greedy (argmax); otherwise sample from softmax(logits / temperature)
    top_k: int = 0  # sample among the k likeliest only (0 = all)
    no_repeat: int = 0  # forbid repeating any token n-gram of this length from the recent output (0 = off)
    window: int = 256  # how many recent tokens the no-repeat guard looks at

    def __post_init__(self) -> None:
        if not 0 <= self.temperature <= 10:
            raise BadValue(f"temperature must be in 0..10, got {self.temperature}")
        if self.top_k < 0:
            raise BadValue(f"top_k must be 0 or more, got {self.top_k}")
        if self.no_repeat < 0 or self.no_repeat == 1:
            raise BadValue(f"no_repeat must be 0 (off) or 2 or more, got {self.no_repeat}")


class Grammar:
    """Which tokens may come next, given the event being spelled and the one before it.

    A pitch may be held on for at most `max_hold_steps` (two bars by default): greedy decoding
    otherwise likes to sustain one pedal note for ever, which the data never does."""

    def __init__(self, codec: Codec, max_hold_steps: int | None = None) -> None:
        self.codec = codec
        self.reader = EventReader(codec)
        self.sounding: frozenset[int] = frozenset()
        self.max_hold = max_hold_steps or 8 * codec.grid.steps_per_beat
        self.held_for: dict[int, int] = {}  # sounding pitch -> steps it has sounded since struck
        ids = np.arange(len(codec))
        self._dur = np.array([codec.is_duration(t) for t in ids])
        self.durations = self._dur  # read-only view for callers that need to forbid a rest
        self._pitch = np.where(self._dur, -1, ids % 128)
        self._held = ~self._dur & (ids >= 128)
        self._pitch_or_held_ok = ~self._held  # a held pitch is allowed only if it sounds: none yet

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
        return ev

    def allowed(self) -> np.ndarray:
        """Boolean mask over the vocabulary."""
        pending = self.reader.pending
        if len(pending) >= self.codec.grid.max_poly:
            return self._dur.copy()
        last = max(pending) if pending else -1
        return ((self._pitch > last) & self._pitch_or_held_ok) | self._dur


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
