"""Live notes -> the model's events.

Notes are placed on the grid by the tempo source's position at the moment they arrive (so they
follow a MIDI clock as well as our own tempo); notes starting within the chord window share one
onset; a release less than half a step before or after the onset nearest it ends there (a lift
or an overlap between legato chords is neither a rest nor an event of both), as does a lift under
an eighth of the note's length (a long note let go a little early); onsets and releases are
rounded to the grid, and `notes_to_events` does the rest, exactly as for a file. With the internal
clock a phrase is read on a grid of its own: phased to fit its onsets, and, following the tempo
(`fit_tempo`), at the tempo it was played, which the Performer then answers at.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from midiseed.runtime.codec import Event, Grid, notes_to_events

LEGATO_STEPS = 0.5  # a release this close to the next onset (in grid steps) is legato: it ends there
LIFT_SHARE = 1 / 8  # and a lift under this share of the note's sounding length (articulation, not a rest)
# Following the player's tempo (`fit_tempo`): how far from the tempo playing a phrase may be read
# (a factor each way), the sd of a player's onsets about their grid (steps) and of the prior on their
# tempo (log of the factor), and the share of each gap between onsets (in sixteenths) in the
# training split of data/music21 (other gaps: RARE_GAP).
TEMPO_SPREAD = 1.3
ONSET_SD = 0.2
TEMPO_SD = 0.15
GAP_SHARE = {
    1: 0.178,
    2: 0.472,
    3: 0.033,
    4: 0.192,
    6: 0.017,
    8: 0.09,
    12: 0.0055,
    16: 0.0092,
    24: 0.0012,
    32: 0.0008,
}
RARE_GAP = 1e-4
LOG_GAP_SHARE = np.log([GAP_SHARE.get(g, RARE_GAP) for g in range(max(GAP_SHARE) + 2)])  # the last: longer
MIN_TEMPO_ONSETS = 4  # fewer onsets than this say nothing of a tempo
TEMPO_SNAP = 0.005  # a tempo read this close to the one playing is that one
TEMPO_ONSETS = 48  # the tempo is read from the last this many onsets
TEMPO_FACTORS = 121  # tempos tried across the reach (TEMPO_SPREAD each way): 0.43% apart
SWINGS = (0.0, 1 / 3, 2 / 3)  # straight, light swing (7:5) and triplet swing (2:1), in steps
SWING_COST = 2.0  # a swing must fit better than straight by this much (nats) to be read as one


@dataclass
class Group:
    """Notes struck together (within the chord window)."""

    t: float
    pos: float
    pitches: list[int] = field(default_factory=list)
    taken: bool = False
    rest: float = 0.0  # seconds of silence (no key down) before it


class Listener:
    """Collects a phrase of live notes; counts what it ignores."""

    def __init__(
        self,
        grid: Grid,
        chord_seconds: float,
        channels: set[int] | None = None,
        dropped: Counter[str] | None = None,
        own_grid: bool = False,
        follow_tempo: bool = False,
    ) -> None:
        """`dropped` counts what is ignored, by reason (the run's, kept across reloads).
        `own_grid`: a phrase is read on a grid of its own, phased to fit its onsets, not on the tempo
        source's (with the internal clock, which nobody plays to: its phase against the player's
        beat is chance, and rounding on it turns a player's small unevenness into other note values)."""
        self.own_grid = own_grid
        self.follow_tempo = follow_tempo and own_grid
        self.tempo_range = (1 / TEMPO_SPREAD, TEMPO_SPREAD)  # the factors a phrase may be read at
        self.factor = 1.0  # the last phrase's tempo over the tempo source's
        self.swing = 0.0  # and the swing its tempo was read with (steps the second eighth came late)
        self.clipped = False  # and it was played beyond the tempos it may be read at
        self._fitted: tuple[tuple, tuple[float, float, float, bool]] | None = None  # (read from, fit)
        self.grid = grid
        self.chord_seconds = chord_seconds
        self.channels = channels or set()  # 0..15; empty = all
        self.held: dict[tuple[int, int], tuple[float, int]] = {}  # (channel, pitch) -> (onset pos, velocity)
        # (channel, pitch) -> (releases still to come of notes it ended by striking it again while
        # held, where it was last struck)
        self.owed: dict[tuple[int, int], tuple[int, float]] = {}
        # (channel, pitch) -> (t, pos) of a release soon after a re-strike, taken as the old note's
        # while the new one is still held: if no other release comes, the note ended there
        self.swallowed: dict[tuple[int, int], tuple[float, float]] = {}
        self.let_go: set[tuple[int, int]] = set()  # keys a call's end released: their note-offs are due
        self.finished: list[tuple[int, float, float, int]] = []  # pitch, onset pos, release pos, velocity
        self.group: Group | None = None
        self.origin: float | None = None  # where the last phrase taken began, on its own grid
        self.last_release_t: float | None = None
        self.dropped: Counter[str] = dropped if dropped is not None else Counter()

    def accepts(self, channel: int) -> bool:
        return not self.channels or channel in self.channels

    def note_on(self, channel: int, pitch: int, velocity: int, t: float, pos: float) -> None:
        # a note played within the window but read after the group was taken (continue mode)
        # starts a group of its own, or it would never be read
        if self.group is not None and not self.group.taken and t - self.group.t <= self.chord_seconds:
            pos = self.group.pos
        else:
            # no key down (one whose only release came soon after its re-strike is let go)
            silent = all(key in self.swallowed for key in self.held) and self.last_release_t is not None
            self.group = Group(t, pos, rest=t - self.last_release_t if silent else 0.0)
        self.group.pitches.append(pitch)
        self.swallowed.pop((channel, pitch), None)
        self.let_go.discard((channel, pitch))
        if (channel, pitch) in self.held:  # struck again (read, not dropped: two notes)
            self._end(channel, pitch, t, pos)
            self.owed[(channel, pitch)] = (self.owed.get((channel, pitch), (0, pos))[0] + 1, pos)
        self.held[(channel, pitch)] = (pos, velocity)

    def note_off(self, channel: int, pitch: int, t: float, pos: float) -> None:
        # A pitch struck again before it was let go (overlapping notes from a sequencer, two
        # controllers, or legato repeated notes played with human timing): the first release soon
        # after is the old note's, which ended at the re-strike, not the new one's. A release that
        # comes later ends the new note; so does one soon after, if no other comes before the
        # phrase is read (a device that sends on, on, off: `phrase_ready`, `take_phrase`).
        key = (channel, pitch)
        if key in self.let_go and key not in self.held:  # the call ended while it was down
            self.let_go.discard(key)
            return
        owed, struck_again = self.owed.pop(key, (0, 0.0))
        if owed and 0 <= pos - struck_again < LEGATO_STEPS and key in self.held:
            self.swallowed[key] = (t, pos)
            self.last_release_t = t
            if owed > 1:  # struck three times or more: more old releases to come
                self.owed[key] = (owed - 1, struck_again)
        else:
            self._end(channel, pitch, t, pos)

    def forget(self) -> None:
        """Every key up and nothing heard (a panic)."""
        self.held.clear()
        self.owed.clear()
        self.swallowed.clear()
        self.let_go.clear()
        self.discard()

    def discard(self) -> None:
        """Forget the notes heard (a mode change, a panic): what `take_phrase` would read, unread."""
        for key, (t, pos) in list(self.swallowed.items()):
            self._end(*key, t, pos)
        self.finished = []
        self.group = None

    def keep_keys(self, old: Listener) -> None:
        """Take over what another listener knows of the keys (a reload): those down, the releases
        owed or already taken for an old note's, the ones a call's end let go."""
        self.held, self.owed, self.swallowed, self.let_go = old.held, old.owed, old.swallowed, old.let_go

    def end_call(self, t: float, pos: float) -> None:
        """The call is over (the end-of-call CC): every key still down counts as let go now, and
        its note-off, when it comes, is expected (neither is dropped input)."""
        for key in list(self.held):
            self._end(*key, *self.swallowed.get(key, (t, pos)))
            self.let_go.add(key)

    def _end(self, channel: int, pitch: int, t: float, pos: float) -> None:
        self.swallowed.pop((channel, pitch), None)
        start = self.held.pop((channel, pitch), None)
        if start is None:
            self.dropped["note-off without note-on"] += 1
            return
        self.finished.append((pitch, start[0], pos, start[1]))
        self.last_release_t = t

    def release_stuck(self, t: float, pos: float, max_steps: float) -> None:
        """A key held longer than max_steps (a lost note-off) counts as released now."""
        for (channel, pitch), (onset, _) in list(self.held.items()):
            if pos - onset > max_steps:
                swallowed = self.swallowed.get((channel, pitch))
                if swallowed is None:
                    self.dropped["stuck input note"] += 1
                # one whose only release came soon after its re-strike ended there (not stuck)
                self._end(channel, pitch, *(swallowed or (t, pos)))

    def phrase_ready(self, t: float, silence_seconds: float) -> bool:
        # a note whose only release came soon after its re-strike counts as let go there
        return (
            bool(self.finished)
            and all(key in self.swallowed for key in self.held)
            and self.last_release_t is not None
            and (t - self.last_release_t >= silence_seconds)
        )

    def take_phrase(self) -> tuple[list[Event], int]:
        """The finished notes as events (and their mean velocity); the listener starts afresh."""
        for key, (t, pos) in list(self.swallowed.items()):
            self._end(*key, t, pos)  # its only release came soon after its re-strike: it ended there
        notes = self.finished
        self.finished = []
        self.group = None
        if not notes:
            return [], 0
        onsets = {a for _, a, _, _ in notes}
        factor, base, swing, clipped = 1.0, 0.0, 0.0, False
        if self.follow_tempo:
            factor, base, swing, clipped = self._fit_tempo(onsets)
        elif self.own_grid:
            base = self.phase(onsets)
        self.factor, self.swing, self.clipped = factor, swing, clipped
        first = min(onsets)

        # the first onset, on the grid the phrase is read on (in the tempo source's steps; swung,
        # the off-beat where the player played it, not the straight grid's sixteenth after it)
        at = np.round(unswung(np.array((first - base) * factor), swing))
        self.origin = base + float(swung(at, swing)) / factor
        # in the player's steps (swung notes as played: a swung pair of eighths is read as 3 + 1 or
        # 2 + 2, as before the tempo was followed, and a dotted rhythm stays dotted)
        notes = self._legato([(p, (a - base) * factor, (b - base) * factor, v) for p, a, b, v in notes])
        arr = np.array([[p, round(a), round(b)] for p, a, b, _ in notes], dtype=np.int64)
        arr[:, 1:] -= arr[:, 1].min()
        velocity = round(sum(v for *_, v in notes) / len(notes))
        return notes_to_events(arr, self.grid), velocity

    def read_tempo(self) -> None:
        """Read the tempo of the notes finished so far now, ahead of `take_phrase` (which reads it
        again only if more notes came): it takes tens of milliseconds, which the silence that ends a
        phrase has to spare and the answer's first note has not."""
        if self.follow_tempo and self.finished:
            self._fit_tempo({a for _, a, _, _ in self.finished})

    def _fit_tempo(self, onsets: set[float]) -> tuple[float, float, float, bool]:
        key = (tuple(sorted(onsets)), self.tempo_range)
        if self._fitted is None or self._fitted[0] != key:
            self._fitted = (key, fit_tempo(onsets, *self.tempo_range))
        return self._fitted[1]

    @staticmethod
    def phase(onsets: set[float]) -> float:
        """The grid's phase that fits the onsets best: the circular mean of their fractional
        positions (from the first onset alone, that onset's own unevenness moved every other)."""
        angles = 2 * np.pi * np.array(list(onsets))
        return float(np.arctan2(np.sin(angles).mean(), np.cos(angles).mean()) / (2 * np.pi))

    @staticmethod
    def _legato(notes: list[tuple[int, float, float, int]]) -> list[tuple[int, float, float, int]]:
        """Each note let go less than LEGATO_STEPS before or after an onset ends at it: a
        player's lift between chords is not a rest, nor their overlap an event of both chords
        (rounded on its own, a 20 ms lift or overlap could become either). A lift under LIFT_SHARE
        of the note's sounding length ends there too: a whole note let go 5% early is not followed
        by a sixteenth rest. The last sonority's voices (those sounding after the last onset), let
        go one by one, end together at the last of their releases (not in a fragment of a step)."""

        def lift(a: float, b: float) -> float:  # how early a note started at a may be let go
            return max(LEGATO_STEPS, (b - a) * LIFT_SHARE)

        onsets = sorted({a for _, a, _, _ in notes})
        out = []
        for p, a, b, v in notes:
            # the onsets either side of the release, of those after the note's start (a voice held
            # across other voices' onsets ends at one it was let go near): the next within the lift
            # allowed, the one before within an overlap's, the nearer if both
            j = bisect.bisect_left(onsets, b)
            near = [o for o in onsets[j : j + 1] if o - b < lift(a, b)]
            near += [o for o in onsets[max(j - 1, 0) : j] if o > a and b - o < LEGATO_STEPS]
            if near:
                b = min(near, key=lambda o: abs(o - b))
            out.append((p, a, b, v))
        # the last sonority: the voices still sounding after the last onset end together, at the
        # last of their releases, each within the lift allowed
        last = [i for i, (_, a, b, _) in enumerate(out) if b > onsets[-1]]
        end = max((out[i][2] for i in last), default=0.0)
        for i in last:
            p, a, b, v = out[i]
            if end - b < lift(a, b):
                out[i] = (p, a, end, v)
        return out

    def take_group(self, t: float) -> tuple[list[int], int, float, float] | None:
        """Once the chord window has closed: the pitches struck together (for `continue` mode), their
        mean velocity, the grid position they were struck at and the seconds of silence before."""
        g = self.group
        if g is None or g.taken or t - g.t < self.chord_seconds:
            return None
        g.taken = True
        velocities = [v for (_, p), (pos, v) in self.held.items() if p in g.pitches and pos == g.pos]
        velocities += [v for p, pos, _, v in self.finished if p in g.pitches and pos == g.pos]
        self.finished = [n for n in self.finished if n[1] >= g.pos]  # older notes are already fed
        velocity = round(sum(velocities) / len(velocities)) if velocities else 0
        return sorted(set(g.pitches)), velocity, g.pos, g.rest


def swung(k: np.ndarray, swing: float) -> np.ndarray:
    """Straight positions (steps from a beat, a beat being 4 steps) where a player swinging by
    `swing` steps plays them: the second eighth of each beat `swing` late, the sixteenths either
    side of it in proportion."""
    beat, p = np.divmod(k, 4.0)
    half = 2.0 + swing
    return 4.0 * beat + np.where(p < 2.0, p * half / 2.0, half + (p - 2.0) * (4.0 - half) / 2.0)


def unswung(u: np.ndarray, swing: float) -> np.ndarray:
    """The inverse of `swung`: where a swung position is written."""
    beat, p = np.divmod(u, 4.0)
    half = 2.0 + swing
    return 4.0 * beat + np.where(p < half, p * 2.0 / half, 2.0 + (p - half) * 2.0 / (4.0 - half))


def fit_tempo(
    onsets: set[float],
    low: float = 1 / TEMPO_SPREAD,
    high: float = TEMPO_SPREAD,
    snap: float = TEMPO_SNAP,
    count: int = TEMPO_FACTORS,
    swings: tuple[float, ...] = SWINGS,
) -> tuple[float, float, float, bool]:
    """The player's tempo, beat and swing, from a phrase's onsets (in the tempo source's steps):
    (factor, base, swing, clipped), so that (position - base) * factor is in the player's steps
    (with a swing, their beats on the multiples of 4, and unswung(that, swing) in straight steps);
    clipped: the tempo fitted was beyond [low, high], and the factor is the nearest bound.

    Each of `count` factors in [low, high] (a fine log grid), beat phase (an eighth of a step
    apart) and swing in `swings` is scored by how far the onsets fall from its grid (normal, sd
    ONSET_SD of the player's step), how common the gaps between them are in music (GAP_SHARE:
    eighths read as 2.4 steps are far likelier eighths at a slower tempo than a run of 2s and 3s),
    how far it is from the tempo playing (log-normal, sd TEMPO_SD) and, for a swing, SWING_COST
    (swung eighths, long-short, would otherwise be read as straight ones at three quarters of the
    tempo, the long note an eighth, the short a sixteenth). The best one's grid is then fitted to
    the onsets by least squares. Onsets less than LEGATO_STEPS apart count as one (a chord spread
    wider than the chord window). With fewer than MIN_TEMPO_ONSETS onsets, or if no factor is in
    range: the tempo playing, straight, on the phase of the onsets; so it is, straight, within
    `snap` of it. The last TEMPO_ONSETS onsets are scored."""
    x = np.array(sorted(onsets), dtype=float)
    # a chord's notes struck further apart than the chord window (each its own onset, a fraction
    # of a step apart) count as one onset, at their mean: the tempo is of the chords, not the spread
    split = np.flatnonzero(np.diff(x) >= LEGATO_STEPS) + 1
    x = np.array([part.mean() for part in np.split(x, split)])[-TEMPO_ONSETS:]
    if len(x) < MIN_TEMPO_ONSETS or not 0 < low <= 1 <= high:
        return 1.0, Listener.phase(onsets), 0.0, False
    factors = np.exp(np.linspace(np.log(low), np.log(high), count))
    phases = np.arange(32) / 8
    y = x[None, None, :] * factors[:, None, None] - phases[None, :, None]  # factor, phase, onset
    best = (np.inf, 0, 0, 0.0)
    for swing in swings:
        steps = np.round(unswung(y, swing) if swing else y)
        gaps = np.clip(np.diff(steps, axis=2), 0, len(LOG_GAP_SHARE) - 1).astype(np.int64)
        off = y - (swung(steps, swing) if swing else steps)
        cost = (off**2).sum(2) / (2 * ONSET_SD**2) - LOG_GAP_SHARE[gaps].sum(2)
        cost += (np.log(factors) ** 2 / (2 * TEMPO_SD**2))[:, None] + (SWING_COST if swing else 0.0)
        i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
        if cost[i, j] < best[0]:
            best = (cost[i, j], i, j, swing)
    _, i, j, swing = best
    k = swung(np.round(unswung(y[i, j], swing)), swing)
    if len(set(k)) < 2:
        return 1.0, Listener.phase(onsets), 0.0, False
    slope, base = np.polyfit(k, x, 1)  # positions = base + slope * the player's (swung) steps
    if abs(slope - 1) < snap and not swing:
        return 1.0, Listener.phase(onsets), 0.0, False  # the tempo playing (no drift from the fit's noise)
    factor = float(np.clip(1 / slope, low, high))
    clipped = factor != 1 / slope
    if clipped:  # out of range: the grid at the factor allowed, fitted to these onsets
        base = float(np.mean(x - k / factor))
    return factor, float(base), swing, clipped
