"""The token codec: notes on a beat grid <-> events <-> token ids. Pure Python and numpy.

An *event* is the set of pitches sounding over one stretch of time in which nothing starts or
stops (or a rest), with that stretch's length in grid steps. Each sounding pitch carries a flag:
struck at the start of the event, or held over from the event before. That flag is what lets
MIDI -> tokens -> MIDI keep every note's onset and duration, polyphony included, where the seed
project kept pitches only and played everything 0.5 beats apart.

This is the one definition of the codec; training, export, the daemon and the tests import it,
and the model file carries its parameters and vocabulary (see `Codec.to_json`).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

CODEC_VERSION = 1
_FAR = 12.0  # semitones: a pitch farther than an octave from any other counts as this far
_REST_PENALTY = 100.0  # mapping a chord to a rest (or back) is the last resort


class CodecError(ValueError):
    """A token, key or codec description that this codec cannot read."""


@dataclass(frozen=True)
class Grid:
    """How time and polyphony are quantised; part of every model file."""

    steps_per_beat: int = 4  # grid resolution: 4 = sixteenth notes
    max_steps: int = 16  # longest single event; longer stretches become held continuations
    max_rest: int = 32  # longest silence kept inside a piece (longer silences are shortened)
    max_poly: int = 8  # most pitches in one event: the lowest plus the highest (max_poly - 1)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise CodecError(f"grid.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Event:
    """Pitches sounding for `steps` grid steps; `held[i]` says pitch i continues from before."""

    pitches: tuple[int, ...]
    held: tuple[bool, ...]
    steps: int

    @property
    def is_rest(self) -> bool:
        return not self.pitches

    def key(self) -> str:
        """Stable text form, e.g. ``60,64_,67:4`` (``_`` = held) or ``r:8``."""
        if not self.pitches:
            return f"r:{self.steps}"
        body = ",".join(f"{p}{'_' if h else ''}" for p, h in zip(self.pitches, self.held))
        return f"{body}:{self.steps}"

    @staticmethod
    def from_key(key: str) -> Event:
        """Inverse of `key`."""
        try:
            body, steps_text = key.rsplit(":", 1)
            steps = int(steps_text)
            if steps < 1:
                raise ValueError
            if body == "r":
                return Event((), (), steps)
            parts = body.split(",")
            pitches = tuple(int(p.rstrip("_")) for p in parts)
            held = tuple(p.endswith("_") for p in parts)
        except ValueError as err:
            raise CodecError(f"not an event key: {key!r}") from err
        if any(not 0 <= p <= 127 for p in pitches) or list(pitches) != sorted(set(pitches)):
            raise CodecError(f"not an event key: {key!r} (pitches must be distinct, sorted, 0..127)")
        return Event(pitches, held, steps)

    def transposed(self, semitones: int) -> Event | None:
        """This event moved by `semitones`, or None when a pitch leaves 0..127."""
        pitches = tuple(p + semitones for p in self.pitches)
        if any(not 0 <= p <= 127 for p in pitches):
            return None
        return Event(pitches, self.held, self.steps)


def rest(steps: int) -> Event:
    return Event((), (), steps)


def clean_notes(notes: np.ndarray, grid: Grid) -> np.ndarray:
    """Normalise grid notes (pitch, start, end): min length 1, no overlap of one pitch, sorted."""
    notes = np.asarray(notes, dtype=np.int64).reshape(-1, 3)
    if len(notes) == 0:
        return notes
    notes = notes[(notes[:, 0] >= 0) & (notes[:, 0] <= 127)].copy()
    notes[:, 2] = np.maximum(notes[:, 2], notes[:, 1] + 1)
    order = np.lexsort((notes[:, 1], notes[:, 0]))
    notes = notes[order]
    keep = np.ones(len(notes), dtype=bool)
    # A second note-on of a sounding pitch ends the first one there (a piano re-strikes).
    same = notes[1:, 0] == notes[:-1, 0]
    overlap = same & (notes[1:, 1] < notes[:-1, 2])
    notes[:-1, 2] = np.where(overlap, notes[1:, 1], notes[:-1, 2])
    keep[:-1] &= notes[:-1, 2] > notes[:-1, 1]  # duplicates at the same onset collapse to one
    notes = notes[keep]
    return notes[np.lexsort((notes[:, 0], notes[:, 1]))]


def notes_to_events(notes: np.ndarray, grid: Grid = Grid()) -> list[Event]:
    """Grid notes (N x 3: pitch, start step, end step) -> events. Leading silence is dropped."""
    notes = clean_notes(notes, grid)
    if len(notes) == 0:
        return []
    starts: dict[int, list[int]] = {}
    ends: dict[int, list[int]] = {}
    for pitch, start, end in notes.tolist():
        starts.setdefault(start, []).append(pitch)
        ends.setdefault(end, []).append(pitch)
    times = sorted(set(starts) | set(ends))
    sounding: dict[int, int] = {}  # pitch -> onset step
    events: list[Event] = []
    for t, t_next in itertools.pairwise(times):
        for pitch in ends.get(t, ()):
            if sounding.get(pitch, t) < t:
                del sounding[pitch]
        for pitch in starts.get(t, ()):
            sounding[pitch] = t
        length = t_next - t
        if not sounding:
            events.extend(_split(rest(1), min(length, grid.max_rest), grid))
            continue
        pitches = sorted(sounding)
        if len(pitches) > grid.max_poly:
            pitches = [pitches[0], *pitches[-(grid.max_poly - 1) :]]
        held = tuple(sounding[p] < t for p in pitches)
        events.extend(_split(Event(tuple(pitches), held, 1), length, grid))
    return events


def _split(template: Event, length: int, grid: Grid) -> list[Event]:
    """One stretch of `length` steps as events of at most grid.max_steps; later ones are held."""
    out = []
    first = True
    while length > 0:
        steps = min(length, grid.max_steps)
        held = template.held if first else tuple(True for _ in template.pitches)
        out.append(Event(template.pitches, held, steps))
        length -= steps
        first = False
    return out


def events_to_notes(events: Iterable[Event]) -> np.ndarray:
    """Events -> grid notes (N x 3: pitch, start, end), sorted by start then pitch."""
    t = 0
    sounding: dict[int, int] = {}
    notes: list[tuple[int, int, int]] = []
    for ev in events:
        wanted = dict(zip(ev.pitches, ev.held))
        for pitch in list(sounding):
            if pitch not in wanted or not wanted[pitch]:
                notes.append((pitch, sounding.pop(pitch), t))
        for pitch in ev.pitches:
            sounding.setdefault(pitch, t)  # held and sounding: keep; anything else: strike now
        t += ev.steps
    notes.extend((pitch, start, t) for pitch, start in sounding.items())
    arr = np.array(sorted(notes, key=lambda n: (n[1], n[0])), dtype=np.int64).reshape(-1, 3)
    return arr


class Codec:
    """A grid and a bounded vocabulary of events; maps any event to the nearest known one."""

    def __init__(self, keys: Sequence[str], grid: Grid = Grid()) -> None:
        if not keys:
            raise CodecError("a vocabulary needs at least one event")
        self.grid = grid
        self.events = [Event.from_key(k) for k in keys]
        self.keys = [ev.key() for ev in self.events]
        self.index = {k: i for i, k in enumerate(self.keys)}
        if len(self.index) != len(self.keys):
            raise CodecError("vocabulary has duplicate events")
        self._nearest_cache: dict[Event, int] = {}
        self._build_tables()

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def build(cls, counts: Counter[str], cap: int, grid: Grid = Grid()) -> Codec:
        """The `cap` most frequent events (ties broken by key, so the result is deterministic)."""
        if cap < 1:
            raise CodecError(f"vocabulary cap must be at least 1, got {cap}")
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([k for k, _ in ranked[:cap]], grid)

    def _build_tables(self) -> None:
        n = len(self.events)
        self._steps = np.array([np.log2(ev.steps) for ev in self.events], dtype=np.float32)
        self._is_rest = np.array([ev.is_rest for ev in self.events], dtype=bool)
        self._present = np.zeros((n, 128), dtype=np.float32)
        self._held = np.zeros((n, 128), dtype=bool)
        for i, ev in enumerate(self.events):
            self._present[i, list(ev.pitches)] = 1.0
            self._held[i, list(ev.pitches)] = ev.held
        # distance from each pitch 0..127 to the nearest pitch of each vocabulary event
        grid_p = np.arange(128, dtype=np.float32)
        self._dist_to = np.full((n, 128), _FAR, dtype=np.float32)
        for i, ev in enumerate(self.events):
            if ev.pitches:
                d = np.abs(grid_p[:, None] - np.array(ev.pitches, dtype=np.float32)[None, :]).min(1)
                self._dist_to[i] = np.minimum(d, _FAR)

    def nearest(self, ev: Event) -> int:
        """Id of `ev`, or of the closest known event in pitch, hold pattern and duration."""
        found = self.index.get(ev.key())
        if found is not None:
            return found
        cached = self._nearest_cache.get(ev)
        if cached is not None:
            return cached
        cost = 3.0 * np.abs(self._steps - np.float32(np.log2(ev.steps)))
        if ev.is_rest:
            cost += _REST_PENALTY * ~self._is_rest
        else:
            q = np.array(ev.pitches)
            d_q = np.minimum(np.abs(np.arange(128)[:, None] - q[None, :]).min(1), _FAR).astype(np.float32)
            cost += self._present @ d_q  # each known pitch to the nearest played one
            cost += self._dist_to[:, q].sum(1)  # each played pitch to the nearest known one
            mismatch = self._held[:, q] != np.array(ev.held)[None, :]
            cost += 0.5 * (mismatch & (self._present[:, q] > 0)).sum(1)
            cost += _REST_PENALTY * self._is_rest
        best = int(np.argmin(cost))
        if len(self._nearest_cache) < 100_000:
            self._nearest_cache[ev] = best
        return best

    def encode(self, events: Iterable[Event]) -> np.ndarray:
        """Events -> token ids (int32); unknown events map to the nearest known one."""
        return np.array([self.nearest(ev) for ev in events], dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> list[Event]:
        """Token ids -> events."""
        try:
            return [self.events[int(i)] for i in ids]
        except IndexError as err:
            raise CodecError(f"token id out of range 0..{len(self) - 1}") from err

    def to_json(self) -> str:
        """Everything needed to read and write this model's notes, as JSON."""
        return json.dumps({"codec_version": CODEC_VERSION, "grid": asdict(self.grid), "vocab": self.keys})

    @classmethod
    def from_json(cls, text: str) -> Codec:
        """Inverse of `to_json`; refuses other codec versions."""
        try:
            data = json.loads(text)
            version = data["codec_version"]
            grid = Grid(**data["grid"])
            keys = data["vocab"]
        except (ValueError, KeyError, TypeError) as err:
            raise CodecError(f"not a midiseed codec description: {err}") from err
        if version != CODEC_VERSION:
            raise CodecError(
                f"codec version {version} is not supported (this midiseed reads {CODEC_VERSION})"
            )
        return cls(keys, grid)


def count_events(pieces: Iterable[Sequence[Event]]) -> Counter[str]:
    """How often each event key occurs."""
    counts: Counter[str] = Counter()
    for events in pieces:
        counts.update(ev.key() for ev in events)
    return counts


_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def parse_note_name(name: str) -> int:
    """'C4' -> 60, 'F#3' -> 54, 'Bb5' -> 82, or a MIDI number '60'."""
    text = name.strip()
    if text.isdigit() and 0 <= int(text) <= 127:
        return int(text)
    try:
        pc = _NAMES[text[0].upper()]
        rest_ = text[1:]
        while rest_ and rest_[0] in "#b":
            pc += 1 if rest_[0] == "#" else -1
            rest_ = rest_[1:]
        pitch = 12 * (int(rest_) + 1) + pc
    except (KeyError, IndexError, ValueError) as err:
        raise CodecError(f"not a note name: {name!r} (use e.g. C4, F#3, Bb5 or 0..127)") from err
    if not 0 <= pitch <= 127:
        raise CodecError(f"note {name!r} is outside MIDI's 0..127")
    return pitch
