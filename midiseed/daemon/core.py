"""The performer: what the daemon hears, when it answers, and what it plays when.

Pure logic, driven from outside with explicit times: `handle(bytes, t)` for each incoming
message and `tick(t)` to send whatever is due. The service calls them from one thread that owns
time; the tests call them with made-up times, so they need no sleeps. What needs more than the
performer owns (reload the config, switch to another loaded model) `handle` returns as a
`Command` for the service to carry out.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from midiseed.daemon.config import LIVE_DECODING, STEERING, Config, file_pitch_guard
from midiseed.daemon.listener import (
    LEGATO_STEPS,
    TEMPO_FACTORS,
    TEMPO_SNAP,
    TEMPO_SPREAD,
    Listener,
    fit_tempo,
    swung,
    unswung,
)
from midiseed.daemon.notes import NoteTracker
from midiseed.daemon.status import Stats
from midiseed.daemon.tempo import MAX_BPM, MIN_BPM
from midiseed.runtime.codec import Event
from midiseed.runtime.generate import Generator
from midiseed.runtime.memory import MAX_MEMORY
from midiseed.runtime.sampling import MAX_LOOP_GUARD

log = logging.getLogger(__name__)
OFF, ON = 0, 1
SEND_GUARD_SECONDS = 0.002  # generate ahead only when the next due note is further away than this
# `continue` mode follows the phrase the recent chords make (`Performer._reseed`): a gap of more
# than this many beats between onsets (half a beat's leeway for the player's timing) starts a new
# one, so a chord a bar in 4/4 or every two bars stays one phrase; at most this many chords, as the
# voice floor's window is 8 (runtime.sampling.VOICE_WINDOW) and a loop pattern is seldom longer.
PHRASE_GAP_BEATS = 8
FOLLOW_GROUPS = 16
# and, with our own clock, streams at the tempo the phrase's chords are struck at: read from this many
# of them, over the last STREAM_TEMPO_GROUPS (a few onsets say little of a tempo, and the fit
# then jumped; read from 16, the tempo wandered a percent from chord to chord), since a silence
# of TEMPO_REST_BEATS or more (a bar's rest: a new tempo after it was taken up only 16-24 chords
# on; counted from onsets, a whole note restarted it too)
MIN_STREAM_TEMPO_GROUPS = 8
STREAM_TEMPO_GROUPS = 32
TEMPO_REST_BEATS = 3.5
# a tempo followed is refined within this factor of itself first (a fifth of the fit's work), and
# read across the whole reach only if the chords are beyond that
REFINE_SPREAD = 1.06
# The loop's longest sleep: while an answer plays, keys are down or a chord is forming, ticks plan
# ahead and watch for stuck keys; with none of that, input (which wakes the loop) is all it waits for.
BUSY_TICK_SECONDS = 0.05
IDLE_TICK_SECONDS = 1.0
CHANNEL_MSG_LEN = {0x80: 3, 0x90: 3, 0xA0: 3, 0xB0: 3, 0xC0: 2, 0xD0: 2, 0xE0: 3}
SYSTEM = {0xF8: "clock", 0xFA: "start", 0xFB: "continue", 0xFC: "stop", 0xF2: "songpos"}


def parse(data: list[int] | bytes) -> tuple[str, int, int, int] | str:
    """One complete MIDI message -> (kind, channel, data1, data2), or a reason it is dropped."""
    if not data:
        return "empty message"
    status = data[0]
    if status < 0x80 or status > 0xFF:
        return "garbage (no status byte)"
    if any(not 0 <= b < 0x80 for b in data[1:]) and status != 0xF0:
        return "garbage (bad data byte)"
    if status < 0xF0:
        kind = status & 0xF0
        if len(data) != CHANNEL_MSG_LEN[kind]:
            return "garbage (wrong length)"
        a, b = data[1], data[2] if len(data) > 2 else 0
        name = {0x80: "note_off", 0x90: "note_on", 0xB0: "cc"}.get(kind, "other")
        if name == "note_on" and b == 0:
            name = "note_off"
        return name, status & 0x0F, a, b
    if status == 0xF0:
        return "sysex"
    if status == 0xF2:
        return ("songpos", 0, data[1] | (data[2] << 7), 0) if len(data) == 3 else "garbage (wrong length)"
    if status in SYSTEM:
        return SYSTEM[status], 0, 0, 0
    return "other system message"


@dataclass(frozen=True)
class Command:
    """What `Performer.handle` asks of the service: "reload" (config and model), or "model" (answer
    with loaded model number `value`)."""

    kind: str
    value: int = 0


RELOAD = Command("reload")


class Performer:
    """Listens, decides, plans on the grid and plays; owns the note tracker."""

    def __init__(
        self,
        cfg: Config,
        generator: Generator,
        tempo,
        send: Callable[[list[int]], None],
        tracker: NoteTracker | None = None,
        stats: Stats | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        """A reload makes a new Performer with the old `tracker` (it knows what sounds) and the
        service's `stats` (the counters cover the whole run). `now` is the service's clock, read
        while generating (which takes real time); without it time stands still within a tick."""
        self.cfg = cfg
        self._now = now
        self.gen = generator
        self.grid = generator.codec.grid
        self.tempo = tempo
        self.tracker = tracker or NoteTracker(send)
        self.stats = stats if stats is not None else Stats()
        channels = {c - 1 for c in cfg.in_channels}
        self.listener = Listener(  # with our own clock, each phrase on a grid fitted to its onsets
            self.grid,
            cfg.chord_ms / 1000,
            channels,
            self.stats.input_dropped,
            own_grid=cfg.clock == "internal",
            follow_tempo=cfg.follow_tempo and cfg.clock == "internal",
        )
        self.mode = cfg.mode
        self.out_channel = cfg.out_channel - 1
        self.velocity = cfg.velocity or 80
        self.plan: list[tuple[float, int, int, int]] = []  # heap of (grid position, off/on, order, pitch)
        self._order = itertools.count()
        self.cursor: float | None = None  # where the next generated event starts
        self.end: float | None = None  # where the answer stops (None: a steady stream)
        self.sounding_planned: set[int] = set()
        self.rest_steps: int | None = None  # rest generated since the last notes (None: nothing yet)
        # continue mode: the stream's first notes after a chord wait this long past their time (steps)
        self.entry_wait = 0.0
        self.last_heard: list[int] = []  # for the live view
        # continue mode: the recent chords struck, as (grid position of the onset, pitches, its time)
        self.struck: list[tuple[float, tuple[int, ...], float]] = []
        self.struck_times: list[float] = []  # and when the phrase's last STREAM_TEMPO_GROUPS were
        self.stream_clipped = False  # and their tempo was read beyond the tempos followed (warned)
        self.stream_swing: float | None = None  # and the swing it was read with (None: not yet)
        self.steer = (cfg.voices, cfg.low, cfg.high)  # settable live by CC; 0 = follow the phrase heard
        self._apply_steering()

    # ---- input -------------------------------------------------------------------------------
    def handle(self, data: list[int] | bytes, t: float) -> Command | None:
        """One incoming MIDI message at time t; returns what the service must do about it, if
        anything. Nothing here raises for bad input: it is counted. A panic is carried out here,
        at once: the performer owns the notes."""
        msg = parse(data)
        if isinstance(msg, str):
            self.stats[f"dropped: {msg}"] += 1
            return None
        kind, channel, a, b = msg
        if kind in ("clock", "start", "stop", "continue", "songpos"):
            self._transport(kind, t, a)
            return None
        if kind == "cc" and a in (120, 123, self.cfg.panic_cc):  # a DAW's panic counts too, on any channel
            log.info("panic (CC %d): all notes off", a)
            self.panic()
            return None
        if not self.listener.accepts(channel):
            self.stats["ignored: other channel"] += 1
            return None
        pos = self.tempo.position(t)
        if kind == "note_on":
            self.stats["notes in"] += 1
            if self.mode == "respond" and self.cursor is not None:
                log.info("played over the answer: stopping it")
                self.cancel()
            elif self.mode == "continue":
                # the player comes in where the stream goes on (half a beat after their last note):
                # its notes stop now and the ones falling due are held back (`_send_due`) until the
                # chord is read and re-seeds it; what the model planned and read stays as it was
                self.tracker.release_all()
            self.listener.note_on(channel, a, b, t, pos)
            self.last_heard = [a]
            log.debug("in  note %d vel %d ch %d at step %.2f", a, b, channel + 1, pos)
        elif kind == "note_off":
            self.listener.note_off(channel, a, t, pos)
        elif kind == "cc":
            return self._control(a, b, t, pos)
        else:
            self.stats["ignored: other message"] += 1
        return None

    def _transport(self, kind: str, t: float, value: int) -> None:
        change = self.tempo.on_message(kind, t, value)
        if change == "stop":
            log.info("transport stopped: all notes off")
            self.panic()
        elif change:
            log.info("transport %s", change)
            self.struck.clear()  # the position jumps: gaps across it mean nothing
            self._forget_stream_tempo()
        if kind in ("start", "songpos") and (self.cursor is not None or self.plan):
            # the song position starts again (or moves): what was planned on the old one would wait
            # for positions that now come at another time, or never. A stream goes on from here; an
            # answer to a call heard before the jump is dropped.
            self.cancel()
            if self.mode == "continue":
                self.cursor = self._start_at(self.tempo.position(t))
                self.rest_steps = None

    def _control(self, control: int, value: int, t: float, pos: float) -> Command | None:
        cfg = self.cfg
        if control == 0:
            return None
        if control == cfg.end_call_cc and value >= 64 and self.mode == "respond":
            self.listener.end_call(t, pos)  # the call is over, whatever is still held
            # on the next beat from now: the CC may have been read after the beat it came before
            self._answer(t, self.tempo.position(self._time(t)))
        elif control == cfg.mode_cc:
            mode = "continue" if value >= 64 else "respond"
            if mode != self.mode:
                log.info("mode %s -> %s", self.mode, mode)
                self.panic()  # (the listener forgets what it heard)
                self.mode = mode
                self._file_pitch_guard()  # each mode its own
        elif control == cfg.reload_cc and value >= 64:
            log.info("reload asked by CC %d", control)
            return RELOAD
        elif control == cfg.model_cc:
            return Command("model", value)
        elif control in (cfg.voices_cc, cfg.low_cc, cfg.high_cc):
            which = (cfg.voices_cc, cfg.low_cc, cfg.high_cc).index(control)
            steer = list(self.steer)
            steer[which] = value
            self.steer = (steer[0], steer[1], steer[2])
            self._apply_steering()
            log.info("steering (0 = follow): voices %d, low %d, high %d", *self.steer)
        elif control == cfg.temperature_cc:
            self._decoding(temperature=round(value / 127 * 2, 3))
        elif control == cfg.top_k_cc:
            self._decoding(top_k=value)
        elif control == cfg.no_repeat_cc:
            n = value // 8
            self._decoding(no_repeat=0 if n < 2 else n)
        elif control == cfg.loop_guard_cc:
            self._decoding(loop_guard=min(value, MAX_LOOP_GUARD))
        elif control == cfg.memory_cc:
            self._decoding(memory=round(value / 127 * MAX_MEMORY, 3))
        elif control == cfg.pitch_guard_cc:
            self._decoding(pitch_guard=value >= 64)
        elif control == cfg.anchor_cc:
            self._decoding(anchor=value)
        return None

    def _apply_steering(self) -> None:
        """Hand the generator what `steer` asks for: a voices cap and a register, each either set
        (by config or CC) or following the phrase last heard (the generator's `followed`)."""
        voices, low, high = self.steer
        if not (voices or low or high):
            self.gen.steering = None  # the generator follows the phrase itself
            return
        followed = self.gen.followed
        lo, hi = low or followed.low, high or followed.high
        if lo > hi:  # one bound set past the other: a set bound wins over a followed one
            lo, hi = (min(low, high), max(low, high)) if low and high else (lo, lo) if low else (hi, hi)
        self.gen.steering = followed.overridden(min(voices or followed.voices, self.grid.max_poly), lo, hi)

    def _decoding(self, **change) -> None:
        self.gen.decoding = replace(self.gen.decoding, **change)
        log.info("decoding: %s", self.gen.decoding)

    def _file_pitch_guard(self) -> None:
        """Put in force the pitch guard the config asks for in the mode playing."""
        wanted = file_pitch_guard(self.cfg, self.mode)
        if self.gen.decoding.pitch_guard != wanted:
            self._decoding(pitch_guard=wanted)

    def keep_live(self, old: Performer) -> list[str]:
        """After a reload, what the player set live on `old` (by CC: the mode, the steering, the
        decoding) stays, unless the re-read config changed that very setting: then the file wins.
        Returns the names of the settings kept."""
        was, now = old.cfg, self.cfg
        playing = old.gen.decoding  # the decoding the player had (the new generator has the file's)

        def file(cfg: Config, name: str, mode: str):  # what the file asks for in that mode
            return file_pitch_guard(cfg, mode) if name == "pitch_guard" else getattr(cfg, name)

        def live(name: str, value) -> bool:  # moved away from the file by CC, and the file kept it
            if name == "pitch_guard" and self.mode != old.mode:
                return False  # set by CC for the other mode: a mode change goes back to the file's
            then = file(was, name, old.mode)
            return value != then and file(now, name, self.mode) == then

        kept = []
        if live("mode", old.mode):
            self.mode = old.mode
            kept.append("mode")
        self._file_pitch_guard()
        steer = list(self.steer)
        for i, name in enumerate(STEERING):
            if live(name, old.steer[i]):
                steer[i] = old.steer[i]
                kept.append(name)
        self.steer = (steer[0], steer[1], steer[2])
        self._apply_steering()
        change = {n: getattr(playing, n) for n in LIVE_DECODING if live(n, getattr(playing, n))}
        if change:
            self._decoding(**change)
        return kept + list(change)

    # ---- time --------------------------------------------------------------------------------
    def tick(self, t: float) -> None:
        """Send what is due at t, start answers that are due, and plan ahead."""
        pos = self.tempo.position(t)
        spb = self.grid.steps_per_beat
        self.listener.release_stuck(t, pos, self.cfg.max_held_beats * spb)
        if self.mode == "respond":
            silence = self._silence_seconds()
            listener = self.listener
            if self.cursor is None and listener.phrase_ready(t, silence):
                self._answer(t, pos)
            elif self.cursor is None and listener.follow_tempo and listener.phrase_ready(t, silence / 2):
                self._tempo_range()
                listener.read_tempo()  # half the silence is over: the phrase is likely done
        else:
            group = self.listener.take_group(t)
            if group is not None:
                self._reseed(*group, pos)
        self._send_due(pos)
        if self._plan_ahead(t, pos):
            # what was just planned may be due already (an answer starting now, or a note that fell
            # due while the rest was generated)
            self._send_due(self.tempo.position(self._time(t)))

    def _time(self, t: float) -> float:
        """The time now, within the tick that began at t."""
        return self._now() if self._now is not None else t

    def _send_due(self, pos: float) -> None:
        group = self.listener.group
        forming = self.mode == "continue" and group is not None and not group.taken
        while self.plan and self.plan[0][0] <= pos + 1e-9:
            _, kind, _, pitch = heapq.heappop(self.plan)
            if kind == ON:
                if not forming:  # a chord being struck: not over it (see `handle`)
                    self.tracker.note_on(self.out_channel, pitch, self.velocity)
            else:
                self.tracker.note_off(self.out_channel, pitch)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("out note %s %d at step %.2f", "on " if kind == ON else "off", pitch, pos)
        if self.cursor is not None and not self.plan and self.end is not None and self.cursor >= self.end:
            self.cursor = self.end = None  # the answer is over
            log.info("answer finished")

    def _note_is_near(self, t: float) -> bool:
        # the clock is read again for each event: t is when the tick began, and a beat of inference
        # can take longer than the wait for the first note it planned
        return bool(self.plan) and self.tempo.time_of(self.plan[0][0]) - self._time(t) < SEND_GUARD_SECONDS

    def _plan_ahead(self, t: float, pos: float) -> bool:
        """Generate up to a beat ahead; True if anything was planned."""
        if self.cursor is None or not self.tempo.running:
            return False
        if self._note_is_near(t):
            return False  # a note is about to be due: inference waits, the note does not
        planned = False
        spb = self.grid.steps_per_beat
        horizon = pos + spb
        while self.cursor < horizon and (self.end is None or self.cursor < self.end):
            t0 = time.perf_counter()
            # an answer opens with notes, and a stream never rests for more than two beats
            event = self.gen.next_event(require_notes=self.rest_steps is None or self.rest_steps >= 2 * spb)
            self.rest_steps = (self.rest_steps or 0) + event.steps if event.is_rest else 0
            self.stats.step_times.append(time.perf_counter() - t0)
            self._place(event)
            planned = True
            if self._note_is_near(t):
                break  # its first note is due: send it now, generate the rest after
        if self.end is not None and self.cursor >= self.end:
            for pitch in self.sounding_planned:
                self._push(self.end, OFF, pitch)
            self.sounding_planned = set()
        return planned

    def _place(self, ev: Event) -> None:
        at = self.cursor
        wanted = dict(zip(ev.pitches, ev.held))
        for pitch in self.sounding_planned:
            if not wanted.get(pitch, False):
                self._push(at, OFF, pitch)
        for pitch, held in wanted.items():
            if not (held and pitch in self.sounding_planned):
                self._push(at + min(self.entry_wait, ev.steps / 2), ON, pitch)
        if ev.pitches:
            self.entry_wait = 0.0
        self.sounding_planned = set(ev.pitches)
        end = at + ev.steps
        self.cursor = min(end, self.end) if self.end is not None else end

    def _push(self, pos: float, kind: int, pitch: int) -> None:
        heapq.heappush(self.plan, (pos, kind, next(self._order), pitch))

    def _start_at(self, pos: float, beat_at: float = 0.0, late: float = 0.0) -> float:
        """Where an answer (or a stream restarted by the transport) starts, from `pos`: on the next
        beat of a grid with a beat at `beat_at` in respond mode (or one that passed less than `late`
        steps ago), the next step in continue mode."""
        if not self.cfg.quantize_start:
            return pos
        spb = self.grid.steps_per_beat
        if self.mode == "respond":
            return beat_at + math.ceil((pos - late - beat_at) / spb - 1e-9) * spb
        return math.ceil(pos - 1e-9)

    def _stream_from(self, onset: float, read_steps: int, pos: float) -> float:
        """Where `continue` mode's stream goes on after a chord struck at `onset` that the model read
        as `read_steps` long: where that reading ends, so the model's time is the player's (from the
        next step of the daemon's grid, its events fell a sixteenth and the grids' phase difference
        off the beat they meant). With the internal clock in the player's own phase, with a MIDI
        clock on the DAW's grid; never before now (read late, on that grid's next step). Without
        quantize_start: as soon as ready."""
        if not self.cfg.quantize_start:
            return pos
        # (the onset as heard, not snapped to a grid fitted to the recent onsets: that grid lags a
        # player away from --bpm, and the stream then came in over their next note)
        start = (onset if self.listener.own_grid else round(onset)) + read_steps
        return start + max(0, math.ceil(pos - start - 1e-9))

    def _silence_seconds(self) -> float:
        """The silence that ends a phrase (`silence_beats`)."""
        return self.cfg.silence_beats * self.grid.steps_per_beat * self.tempo.step_seconds

    def _tempo_range(self) -> None:
        """The tempos a phrase may be read at: within TEMPO_SPREAD of the tempo playing, and from
        half to twice bpm."""
        bpm = self.tempo.bpm
        lowest, highest = self._tempo_bounds()
        # always holding 1: a tempo a rounding error past a bound must still follow back
        low, high = max(1 / TEMPO_SPREAD, lowest / bpm), min(TEMPO_SPREAD, highest / bpm)
        self.listener.tempo_range = (min(low, 1.0), max(high, 1.0))

    def _tempo_bounds(self) -> tuple[float, float]:
        """The slowest and fastest tempo followed: half and twice bpm, within MIN_BPM..MAX_BPM."""
        return max(self.cfg.bpm / 2, MIN_BPM), min(self.cfg.bpm * 2, MAX_BPM)

    def _follow(self, factor: float, t: float) -> None:
        """The tempo playing times `factor`, within `_tempo_bounds`, is the player's from time t."""
        lowest, highest = self._tempo_bounds()
        self.tempo.set_bpm(min(max(self.tempo.bpm * factor, lowest), highest), t, followed=True)

    def _answer(self, t: float, pos: float) -> None:
        listener = self.listener
        self._tempo_range()
        events, velocity = listener.take_phrase()
        if not events:
            return
        self.cancel()
        bpm = self.tempo.bpm
        if listener.factor != 1.0:
            # the answer plays at the tempo the phrase was played at: the grid changes speed now,
            # keeping where the player's beat falls (the phrase's first onset, on their grid)
            at, first_beat = self.tempo.time_of(pos), self.tempo.time_of(listener.origin)
            self._follow(listener.factor, t)
            pos, listener.origin = self.tempo.position(at), self.tempo.position(first_beat)
        if listener.clipped:  # it would have been read faster or slower (at a bound: not at all)
            low, high = (bpm * f for f in listener.tempo_range)
            log.warning(
                "a phrase played beyond the tempos followed now (%.1f-%.1f bpm): read at %.1f bpm",
                low,
                high,
                self.tempo.bpm,
            )
        elif listener.factor != 1.0:
            log.info("following the player's tempo: %.1f bpm", self.tempo.bpm)
        self.gen.reset()
        self.gen.prime(events)
        self._apply_steering()  # what the generator follows just changed
        self.velocity = self.cfg.velocity or velocity or 80
        # with our own clock on the player's beat (the phrase's grid, beats from its first onset):
        # the daemon's grid is silent while they play, and its phase against theirs is chance. A
        # beat of theirs that passed less than half a step ago still takes it, its first notes that
        # late (a last chord let go 20 ms after its beat was answered a whole beat later). With
        # MIDI clock: the DAW's next beat.
        if self.listener.own_grid:
            self.cursor = self._start_at(pos, self.listener.origin, late=LEGATO_STEPS)
        else:
            self.cursor = self._start_at(pos)
        self.rest_steps = None
        spb = self.grid.steps_per_beat
        beats = self.cfg.answer_beats or sum(ev.steps for ev in events) / spb  # 0: as long as the call
        self.end = self.cursor + beats * spb
        self.stats["answers"] += 1
        log.info("heard a phrase of %d events; answering for %g beats", len(events), beats)

    def _reseed(self, pitches: list[int], velocity: int, onset: float, rest: float, pos: float) -> None:
        """`continue` mode, a chord (or note) struck at grid position `onset`, taken at `pos`: the
        model reads it at once, and what the stream follows (voices, register, note rate, loops
        allowed) is the phrase the recent chords make: those since the last gap of more than
        PHRASE_GAP_BEATS (or since time stood still or went back: a stopped or relocated MIDI
        clock), at most FOLLOW_GROUPS, each as long as the gap to the next onset (at most the grid's
        longest event), the newest half a beat. `rest`: the seconds of silence before the chord."""
        self.cancel()
        spb = self.grid.steps_per_beat
        struck_at = self.tempo.time_of(onset)
        gap = onset - self.struck[-1][0] if self.struck else 0.5
        # a chord rolled wider than the chord window, with our own clock: its tempo is the phrase's
        rolled = self.listener.own_grid and 0 <= gap < 0.5
        if not 0.5 <= gap <= (PHRASE_GAP_BEATS + 0.5) * spb:
            self.struck.clear()  # a new phrase
            if not rolled:
                self._forget_stream_tempo()
        elif rest >= TEMPO_REST_BEATS * spb * self.tempo.step_seconds and self._a_break(struck_at):
            self.struck_times.clear()  # the tempo may be new after a rest
            self.stream_swing = None
        self.struck.append((onset, tuple(pitches), struck_at))
        if not rolled:
            self.struck_times.append(struck_at)
        del self.struck[:-FOLLOW_GROUPS], self.struck_times[:-STREAM_TEMPO_GROUPS]
        if self.listener.follow_tempo:
            on_grid = self._follow_stream_tempo(pos)
            # on the grid of the tempo followed: where it puts their chord, or where it was heard
            onset = self.struck[-1][0] if on_grid is None else self.tempo.position(on_grid)
        newest = Event(tuple(pitches), (False,) * len(pitches), max(1, spb // 2))
        phrase = [
            Event(chord, (False,) * len(chord), min(max(1, round(b - a)), self.grid.max_steps))
            for (a, chord, _), (b, _, _) in itertools.pairwise(self.struck)
        ]
        self.gen.prime([newest], follow=[*phrase, newest])
        self._apply_steering()
        self.velocity = self.cfg.velocity or velocity or 80
        self.cursor = self._stream_from(onset, newest.steps, pos)
        self.rest_steps = None
        if self.cfg.quantize_start:
            # it comes in where a steady player's next note falls: a player a little late (within
            # the chord window, at most a step and half the note) silences it unheard (`handle`),
            # and it is that much late otherwise
            self.entry_wait = min(self.listener.chord_seconds / self.tempo.step_seconds, newest.steps / 2)
        self.end = None
        self.stats["reseeds"] += 1
        log.debug("re-seeded with %s", pitches)

    def _a_break(self, struck_at: float) -> bool:
        """Whether a chord struck at time `struck_at` breaks the phrase's pattern: more than twice
        its usual gap (the median of the last ones) after the one before (a chord stabbed once a
        bar, with a bar's silence each time, is a pattern, not a rest)."""
        times = [t for *_, t in self.struck[-MIN_STREAM_TEMPO_GROUPS:]]  # the phrase's, kept over rests
        if len(times) < 2:
            return True
        usual = float(np.median(np.diff(times)))
        return struck_at - times[-1] > 2 * usual

    def _forget_stream_tempo(self) -> None:
        """The tempo's onsets and what was read from them, gone (a new phrase, a panic, a jump)."""
        self.struck_times.clear()
        self.stream_clipped, self.stream_swing = False, None

    def _follow_stream_tempo(self, pos: float) -> float | None:
        """`continue` mode with our own clock: the tempo the phrase's chords were struck at (`fit_tempo`
        on their times, from MIN_STREAM_TEMPO_GROUPS of them, within the tempos `_tempo_range`
        allows) becomes the tempo playing, from now (grid position `pos`): the stream goes on in the
        player's steps. Their onsets move to its grid. Returns when the stream is to read their last
        chord from: half of their beat before their next eighth, on the grid fitted to their onsets
        (None: no tempo read, and it goes on from the chord as heard). Phased on one onset, the
        stream was off their grid by that onset's unevenness."""
        if len(self.struck_times) < MIN_STREAM_TEMPO_GROUPS:
            return None
        self._tempo_range()
        step, low, high = self.tempo.step_seconds, *self.listener.tempo_range

        def onsets() -> set[float]:  # in steps of the tempo playing, from the first onset kept
            return {(t - self.struck_times[0]) / step for t in self.struck_times}

        fit = None
        if self.tempo.followed and self.stream_swing is not None:
            # a tempo read from a few onsets is refined by each chord (it does not snap to itself),
            # near itself and in the feel it was read with (another swing absorbed a misfit)
            near = (max(low, 1 / REFINE_SPREAD), min(high, REFINE_SPREAD))
            span = math.log(near[1] / near[0]) / math.log(TEMPO_SPREAD**2)  # of the whole reach
            count = 1 + math.ceil((TEMPO_FACTORS - 1) * span)
            fit = fit_tempo(onsets(), *near, snap=0.0, count=count, swings=(self.stream_swing,))
            if fit[3] and fit[0] not in (low, high):
                # beyond: they moved (not at the whole range's edge: there it is jitter). Read afresh
                # from the last chords (the rest were another tempo)
                del self.struck_times[:-MIN_STREAM_TEMPO_GROUPS]
                fit = None
        if fit is None:
            fit = fit_tempo(onsets(), low, high, snap=0.0 if self.tempo.followed else TEMPO_SNAP)
        first = self.struck_times[0]
        last = (self.struck_times[-1] - first) / step
        factor, base, swing, clipped = fit
        self.stream_swing = swing
        bpm = self.tempo.bpm
        if clipped and not self.stream_clipped:  # once a phrase (at a bound, readings flicker across it)
            log.warning(
                "the chords are played beyond the tempos followed now (%.1f-%.1f bpm)", bpm * low, bpm * high
            )
            self.stream_clipped = True
        if factor != 1.0:
            self._follow(factor, self.tempo.time_of(pos))
            self.struck = [(self.tempo.position(t), chord, t) for _, chord, t in self.struck]
            if abs(factor - 1) >= TEMPO_SNAP:
                log.info("following the player's tempo: %.1f bpm", self.tempo.bpm)
        # their last chord's place on their (swung) grid, and the place half a beat on, where the
        # stream comes in (half a straight beat after a downbeat comes before a swung off-beat)
        k = float(np.round(unswung(np.array((last - base) * factor), swing)))
        ahead = float(swung(np.array(k + 2), swing)) - self.grid.steps_per_beat / 2
        return first + (base + ahead / factor) * step

    def use(self, generator: Generator) -> None:
        """Answer with another (loaded) model from now on; what was planned with the old one stops.
        The decoding set live (temperature, top-k, guards, memory by CC) carries over, as the
        steering does: they are the player's settings, not the model's."""
        if generator is not self.gen:
            self.cancel()
            generator.decoding = self.gen.decoding
            self.gen = generator
            self._apply_steering()

    # ---- stopping ----------------------------------------------------------------------------
    def cancel(self) -> None:
        """Drop the planned answer and release what is sounding."""
        self.entry_wait = 0.0
        self.plan.clear()
        self.cursor = self.end = None
        self.sounding_planned = set()
        self.tracker.release_all()

    def panic(self) -> None:
        """Cancel, forget what was heard, then note-offs and All Notes Off on every channel we used."""
        self.listener.forget()
        self.struck.clear()
        self._forget_stream_tempo()
        self.plan.clear()
        self.cursor = self.end = None
        self.sounding_planned = set()
        self.tracker.panic()

    def next_note_time(self) -> float | None:
        """When the next planned note is due (None: nothing planned)."""
        return self.tempo.time_of(self.plan[0][0]) if self.plan else None

    def next_deadline(self, t: float) -> float:
        """The latest time the next tick() is needed (the service may call it earlier): t itself
        when something is due already (it fell due after the last tick began: that tick spent time
        generating, and the service more on its own jobs), so the loop turns again at once."""
        # "due" is what tick(t) would do, tested as tick tests it; a deadline that has passed
        # but is not due (a note waiting for its MIDI clock pulse, which will wake the loop) is
        # left out, or the service's wait would become a spin
        listener = self.listener
        busy = self.cursor is not None or self.plan or listener.held or listener.group is not None
        times = [t + (BUSY_TICK_SECONDS if busy else IDLE_TICK_SECONDS)]
        if self.plan:
            if self.plan[0][0] <= self.tempo.position(t) + 1e-9:
                return t
            times.append(self.tempo.time_of(self.plan[0][0]))
        if self.mode == "respond" and listener.last_release_t is not None and listener.finished:
            silence = self._silence_seconds()
            if self.cursor is None and listener.phrase_ready(t, silence):
                return t
            times.append(listener.last_release_t + silence)
            if listener.follow_tempo:  # where the phrase's tempo is read, ahead of the answer
                times.append(listener.last_release_t + silence / 2)
        group = listener.group
        if self.mode == "continue" and group is not None and not group.taken:
            if t - group.t >= listener.chord_seconds:
                return t
            times.append(group.t + listener.chord_seconds)
        return min([x for x in times if x > t] or [t + BUSY_TICK_SECONDS])

    @property
    def dropped(self) -> int:
        """Messages dropped: garbage, the listener's and the tempo's (a clock flood)."""
        own = sum(v for k, v in self.stats.items() if k.startswith("dropped"))
        return own + sum(self.stats.input_dropped.values()) + getattr(self.tempo, "dropped", 0)
