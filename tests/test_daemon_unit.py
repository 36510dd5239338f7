"""The daemon's logic with a fake generator, fake ports and made-up times: no sleeps."""

import itertools
import random
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from midiseed.cli import app
from midiseed.daemon.config import Config, ConfigError, load, override
from midiseed.daemon.core import Performer, parse
from midiseed.daemon.listener import Listener, fit_tempo
from midiseed.daemon.notes import NoteTracker
from midiseed.daemon.tempo import InternalTempo, MidiClockTempo
from midiseed.runtime.codec import Codec, Event, events_to_notes
from midiseed.runtime.sampling import Decoding, Steering

runner = CliRunner()
SCRIPT = [Event((60,), (False,), 4), Event((62, 64), (False, False), 2), Event((62, 64), (True, True), 2)]


class FakeGenerator:
    """Plays SCRIPT round and round; records what it was primed with."""

    def __init__(self) -> None:
        self.codec = Codec()
        self.decoding = Decoding()
        self.primed: list[list[Event]] = []
        self.followed_phrases: list[list[Event]] = []  # what each prime asked to follow
        self.resets = 0
        self.steering: Steering | None = None  # what the performer asks for (None: follow)
        self.followed = Steering()
        self._events = itertools.cycle(SCRIPT)

    anchoring = False  # the fake never anchors

    @property
    def in_force(self) -> Steering:
        return self.followed if self.steering is None else self.steering

    def reset(self) -> None:
        self.resets += 1
        self._events = itertools.cycle(SCRIPT)

    def prime(self, events, follow=None) -> None:
        self.primed.append(list(events))
        self.followed_phrases.append(list(events if follow is None else follow))

    def next_event(self, require_notes: bool = False) -> Event:
        return next(self._events)


class Rig:
    """A performer at 120 bpm (a step = 0.125 s) with a recording output and a fake clock."""

    def __init__(self, clock: str = "internal", generator=None, **cfg) -> None:
        self.cfg = replace(Config(), clock=clock, **cfg)
        self.gen = generator or FakeGenerator()
        self.tempo = MidiClockTempo(4) if clock == "midi" else InternalTempo(120, 4, 0.0)
        self.now = 0.0
        self.sent: list[tuple[float, list[int]]] = []
        self.perf = Performer(self.cfg, self.gen, self.tempo, lambda m: self.sent.append((self.now, m)))

    def at(self, t: float, *messages: list[int]) -> None:
        self.advance(t)
        for m in messages:
            self.perf.handle(m, t)
        self.perf.tick(t)

    def advance(self, t: float, dt: float = 0.001) -> None:
        while self.now + dt <= t + 1e-12:
            self.now = round(self.now + dt, 6)
            self.perf.tick(self.now)
        self.now = t

    def ons(self) -> list[tuple[float, int]]:
        return [(t, m[1]) for t, m in self.sent if m[0] & 0xF0 == 0x90]

    def sounding_after(self) -> set[int]:
        on: set[int] = set()
        for _, m in self.sent:
            if m[0] & 0xF0 == 0x90:
                on.add(m[1])
            elif m[0] & 0xF0 == 0x80:
                on.discard(m[1])
            elif m[0] & 0xF0 == 0xB0 and m[1] == 123:
                on.clear()
        return on


def play(rig: Rig, t: float, pitch: int, length: float = 0.2) -> None:
    rig.at(t, [0x90, pitch, 90])
    rig.at(t + length, [0x80, pitch, 0])


def test_the_loop_sleeps_long_only_when_nothing_is_going_on():
    rig = Rig(answer_beats=2)
    assert rig.perf.next_deadline(0.0) == pytest.approx(1.0)  # idle: only input would wake it
    rig.at(0.1, [0x90, 60, 90])
    assert rig.perf.next_deadline(0.1) <= 0.1 + 0.05  # a key is down: watched for a stuck note
    rig.at(0.3, [0x80, 60, 0])
    rig.advance(1.2)  # the phrase is over and the answer plays
    assert rig.perf.cursor is not None
    assert rig.perf.next_deadline(1.2) <= 1.2 + 0.05
    rig.advance(4.0)  # the answer is over
    assert rig.perf.cursor is None and not rig.perf.plan
    assert rig.perf.next_deadline(4.0) == pytest.approx(5.0)


def test_respond_answers_after_the_silence_on_the_next_beat_for_the_answer_length():
    rig = Rig(answer_beats=2)
    play(rig, 0.0, 60, 0.25)
    play(rig, 0.25, 64, 0.25)  # phrase ends at 0.5 s; silence of one beat (0.5 s) -> ready at 1.0
    rig.advance(3.0)
    ons = rig.ons()
    assert ons[0] == (1.0, 60)  # 1.0 s is beat 2 exactly: the next beat once the silence has passed
    assert rig.gen.primed[-1] == [Event((60,), (False,), 2), Event((64,), (False,), 2)]
    assert [p for _, p in ons] == [60, 62, 64]  # 4 + 2 steps of script, then the answer's 2 beats are up
    assert ons[1][0] == pytest.approx(1.5)  # the 60 lasted 4 steps at 0.125 s
    assert rig.sounding_after() == set()
    offs = [t for t, m in rig.sent if m[0] & 0xF0 == 0x80]
    assert max(offs) == pytest.approx(2.0)  # two beats after 1.0
    assert rig.perf.stats["answers"] == 1


def test_playing_again_cancels_the_answer_at_once():
    rig = Rig(answer_beats=8)
    play(rig, 0.0, 60)
    rig.advance(1.1)
    assert rig.sounding_after() == {60}
    rig.at(1.2, [0x90, 67, 100])
    assert rig.sounding_after() == set()
    assert rig.sent[-1] == (1.2, [0x80, 60, 0])
    rig.advance(1.6)
    assert rig.ons()[-1] == (1.0, 60)  # nothing more while the new call goes on


def test_panic_cc_ends_every_note_and_sends_all_notes_off_on_channels_used():
    rig = Rig(out_channel=3)
    play(rig, 0.0, 60)
    rig.advance(1.6)
    assert rig.sounding_after() == {62, 64}
    rig.at(1.7, [0xB5, 119, 127])
    assert rig.sounding_after() == set()
    assert rig.sent[-1] == (1.7, [0xB2, 123, 0])
    rig.advance(3.0)
    assert all(t <= 1.7 for t, _ in rig.ons())


def test_decoding_ccs_change_the_generators_decoding_live():
    rig = Rig()
    assert Config().loop_guard == 32  # the loop guard is on by default
    for cc, value in ((87, 127), (88, 8), (89, 96), (105, 16), (106, 64), (107, 64)):
        rig.at(0.1, [0xB0, cc, value])
    assert rig.gen.decoding == Decoding(
        temperature=2.0, top_k=8, no_repeat=12, loop_guard=16, memory=0.499, pitch_guard=True
    )
    rig.at(0.2, [0xB0, 105, 127], [0xB0, 89, 8])  # past the guard's longest: its longest; no_repeat 1: off
    assert (rig.gen.decoding.loop_guard, rig.gen.decoding.no_repeat) == (64, 0)
    rig.at(0.3, [0xB0, 105, 0], [0xB0, 107, 63])
    assert rig.gen.decoding.loop_guard == 0 and not rig.gen.decoding.pitch_guard


def test_end_of_call_cc_answers_without_waiting_for_silence():
    rig = Rig()
    rig.at(0.0, [0x90, 60, 90])
    rig.at(0.1, [0xB0, 85, 127])  # the key is still down: the call is over anyway
    rig.advance(0.6)
    assert rig.ons()[0] == (0.5, 60)  # the next beat
    assert rig.gen.primed[-1][0].pitches == (60,)


def test_chords_group_within_the_window_and_channels_filter():
    rig = Rig(in_channels=(2,), chord_ms=30)
    rig.at(0.0, [0x91, 60, 90])
    rig.at(0.02, [0x91, 64, 90], [0x90, 50, 90])  # channel 1 is not listened to
    rig.at(0.3, [0x81, 60, 0], [0x81, 64, 0])
    rig.advance(1.5)
    assert rig.gen.primed[-1] == [Event((60, 64), (False, False), 2)]
    assert rig.perf.stats["ignored: other channel"] == 1


def test_with_the_internal_clock_the_answer_comes_in_on_the_player_s_beat():
    """The daemon's own grid is silent while the player plays, and its phase against theirs is
    chance: a phrase begun 0.1 s into it (0.8 of a step) was answered 0.1 s off the player's beat.
    The answer now starts on the next beat of the phrase's own grid; with MIDI clock, the DAW's."""
    rig = Rig(answer_beats=1)
    play(rig, 0.1, 60, 0.25)  # two eighths from 0.1 s: the player's beats are 0.1 + k / 2
    play(rig, 0.35, 64, 0.25)
    rig.advance(2.0)  # a beat of silence from 0.6 s: on their beat at 1.1
    assert rig.ons()[0][0] == pytest.approx(1.1)
    late = Rig(answer_beats=1)
    play(late, 0.1, 60, 0.25)
    play(late, 0.35, 64, 0.35)  # let go 100 ms late, over the half step allowed: the next beat
    late.advance(2.5)
    assert late.ons()[0][0] == pytest.approx(1.6)


def test_a_last_chord_let_go_a_little_after_its_beat_is_answered_a_beat_later_not_two():
    """A phrase let go 20 ms after its last beat was answered a whole beat later than one let go
    30 ms before it. The silence that ends it is still a beat; but a beat that passed less than
    half a step (62 ms) ago still takes the answer, its first notes that late."""
    for late in (-0.03, 0.02, 0.05, 0.1):
        rig = Rig(answer_beats=1)
        play(rig, 0.0, 60, 0.5)
        play(rig, 0.5, 64, 0.5 + late)  # the phrase ends on beat 2 (1.0 s)
        rig.advance(3.0)
        first = rig.ons()[0][0]
        if late < 0.0625:
            assert first == pytest.approx(1.5 + max(late, 0.0), abs=0.0015), late  # a beat after it
        else:
            assert first == pytest.approx(2.0), late  # over half a step late: the next beat
    short = Rig(answer_beats=1, silence_beats=0.25)  # a lift shorter than the silence set
    play(short, 0.0, 60, 0.2)
    play(short, 0.28, 64, 0.2)  # 80 ms after, under the 125 ms of silence: one phrase
    short.advance(1.5)
    assert short.perf.stats["answers"] == 1 and short.gen.primed[-1][0].pitches == (60,)


def test_continue_mode_streams_and_every_note_reseeds():
    rig = Rig(mode="continue", answer_beats=1)
    rig.at(0.0, [0x90, 60, 90])
    rig.advance(0.04)  # the chord window closes: re-seeded, stream starts on the next step
    assert len(rig.gen.primed) == 1
    rig.advance(3.0)
    assert len(rig.ons()) > 5  # a stream, not an 1-beat answer
    rig.at(3.01, [0x90, 72, 90])
    rig.advance(3.1)
    assert len(rig.gen.primed) == 2 and rig.gen.primed[-1][0].pitches == (72,)
    assert rig.gen.resets == 0  # continue keeps the state and adds to it


def test_continue_mode_s_stream_goes_on_where_the_model_s_reading_of_the_note_ends():
    """The model reads a struck note as half a beat. The stream used to start on the daemon's next
    step, a sixteenth (and the grids' phase difference) before the model's next event was meant:
    after notes on the beat, the stream fell a sixteenth after it. It now goes on half a beat after
    the note: in the player's own time with the internal clock, on the DAW's grid with MIDI clock."""
    rig = Rig(mode="continue", chord_ms=30)  # 120 bpm: half a beat is 0.25 s
    rig.at(0.03, [0x90, 60, 90])
    rig.at(0.2, [0x80, 60, 0])
    rig.advance(1.0)
    (first, _), (second, _), *_ = rig.ons()
    assert second == pytest.approx(0.28 + 0.5)  # in the player's time: 0.28 s (not the daemon's
    assert first == pytest.approx(0.28 + 0.03)  # next step, 0.125 s), its first note a chord window late
    assert rig.gen.primed[-1][-1].steps == 2
    midi = Rig(clock="midi", mode="continue", chord_ms=30)
    pulse = 60 / (120 * 24)  # 6 pulses a step
    midi.at(0.0, [0xFA])
    for k in range(96):
        if k == 7:  # struck just after step 1's pulse: read on the DAW's step 1
            midi.at(k * pulse + 0.001, [0x90, 60, 90])
        midi.at((k + 1) * pulse, [0xF8])
    first = midi.ons()[0][0]  # step 3 (the first pulse is step 0), a chord window late
    assert first == pytest.approx((1 + 18) * pulse + 0.03, abs=0.003)
    slow = Rig(mode="continue", chord_ms=300)  # read after half a beat: the player's next step
    slow.at(0.03, [0x90, 60, 90])
    slow.advance(1.0)
    assert slow.ons()[0][0] == pytest.approx(0.03 + (3 + 1) * 0.125)  # step 3, and a step's wait


def test_continue_mode_s_stream_never_cuts_in_on_a_steady_player_away_from_its_bpm():
    """A stream lined up with a grid fitted to the recent onsets lagged a player at 117 bpm against
    120 and came in over almost every note (tried and reverted, before the tempo was followed);
    from the last onset, it does not, following their tempo or not."""
    for bpm, follow in itertools.product((114, 117, 123, 126), (True, False)):
        rig = Rig(mode="continue", chord_ms=30, follow_tempo=follow)
        eighth = 60 / bpm / 2
        for k in range(32):
            play(rig, 0.05 + k * eighth, 62 + k % 8, 0.95 * eighth)
        assert [t for t, _ in rig.ons() if t < 0.05 + 31 * eighth] == [], bpm


def test_continue_mode_s_stream_does_not_sound_over_the_player_s_next_note():
    """The stream goes on half a beat after a note: where a player playing eighths strikes the next.
    It used to stop only when that chord was read, 30 ms on, so each of their notes came with a
    stray stream note. Now its first note waits a chord window past its time, a note-on stops the
    stream's notes at once, and its note-ons falling due while a chord forms are not sent."""
    for struck in (0.24, 0.26, 0.279):  # 10 ms early, 10 and 29 ms late for the stream's 0.25 s
        player = Rig(mode="continue", chord_ms=30)
        play(player, 0.0, 60, 0.2)
        player.at(struck, [0x90, 62, 90])
        player.advance(struck + 0.035)  # the chord is read and the stream planned again
        assert len(player.gen.primed) == 2
        assert player.ons() == [], struck  # nothing over the player's note
    late = Rig(mode="continue", chord_ms=30)
    play(late, 0.0, 60, 0.2)
    late.advance(0.29)
    ((t_on, first),) = late.ons()
    assert t_on == pytest.approx(0.28)  # a player 30 ms late or more: the stream came in
    late.at(0.3, [0x90, 62, 90])
    assert late.sent[-1] == (0.3, [0x80, first, 0])  # and stops at once when they play
    late.advance(0.32)
    assert len(late.ons()) == 1  # nothing more until the chord is read


def test_an_end_of_call_cc_read_late_starts_the_answer_on_the_next_beat_from_now():
    rig = Rig(answer_beats=1, silence_beats=8)
    rig.perf._now = lambda: rig.now  # the service's clock
    rig.at(0.0, [0x90, 60, 90])
    rig.at(0.2, [0x80, 60, 0])
    rig.advance(0.6)  # the loop was busy past the beat at 0.5 s
    rig.perf.handle([0xB0, rig.cfg.end_call_cc, 127], 0.25)  # sent at 0.25 s, read at 0.6 s
    rig.advance(1.2)
    assert rig.ons()[0][0] == 1.0  # not at once, at 0.6 s, with the notes due since 0.5 s clumped


def test_a_chord_note_read_after_its_chord_was_taken_is_read_on_its_own_not_lost():
    rig = Rig(mode="continue", chord_ms=30)
    rig.at(0.0, [0x90, 60, 90])
    rig.advance(0.05)  # the window closed and the chord was read: C4 alone
    rig.perf.handle([0x90, 64, 90], 0.01)  # E4, played 10 ms after C4 but read only now
    rig.advance(0.1)
    assert [ev[-1].pitches for ev in rig.gen.primed] == [(60,), (64,)]


def test_continue_mode_follows_the_phrase_the_recent_chords_make_not_the_last_key():
    rig = Rig(mode="continue", chord_ms=30)  # 120 bpm: a beat is 0.5 s, a step 0.125 s
    for t, pitch in ((0.0, 62), (0.25, 66), (0.5, 69), (1.0, 74)):  # eighths, then a quarter
        rig.at(t, [0x90, pitch, 90])
        rig.at(t + 0.2, [0x80, pitch, 0])
    rig.advance(1.1)
    assert [ev.pitches for ev in rig.gen.primed[-1]] == [(74,)]  # the model reads the newest note
    phrase = rig.gen.followed_phrases[-1]  # and follows the four as a phrase, by their onsets
    assert [(ev.pitches, ev.steps) for ev in phrase] == [((62,), 2), ((66,), 2), ((69,), 4), ((74,), 2)]
    rig.at(6.0, [0x90, 60, 90])  # after more than eight beats: a new phrase
    rig.advance(6.1)
    assert [ev.pitches for ev in rig.gen.followed_phrases[-1]] == [(60,)]
    rig.at(6.2, [0xB0, 86, 0])  # respond and back: forgotten
    rig.at(6.3, [0xB0, 86, 127])
    rig.at(6.4, [0x90, 64, 90])
    rig.advance(6.5)
    assert [ev.pitches for ev in rig.gen.followed_phrases[-1]] == [(64,)]


def test_continue_mode_keeps_a_chord_a_bar_as_one_phrase_whatever_the_timing():
    rig = Rig(mode="continue")
    jitter = [0.0, 0.012, -0.009, 0.02, -0.015, 0.004]  # a player's timing, in seconds
    for i, dt in enumerate(jitter):  # a chord every four beats (2 s at 120 bpm)
        t = 2.0 * i + 0.1 + dt
        rig.at(t, [0x90, 48, 90], [0x90, 64, 90])
        rig.at(t + 1.8, [0x80, 48, 0], [0x80, 64, 0])
    rig.advance(12.5)
    phrase = rig.gen.followed_phrases[-1]
    assert len(phrase) == 6 and [ev.steps for ev in phrase[:-1]] == [16] * 5  # a bar each, capped


def test_continue_mode_counts_from_when_the_chord_was_struck_not_when_it_was_read():
    rig = Rig(mode="continue")
    for t in (0.0, 0.25, 0.5):  # eighths at 120 bpm: 2 steps apart
        rig.at(t, [0x90, 60 + int(t * 8), 90])
        rig.at(t + 0.2, [0x80, 60 + int(t * 8), 0])
    rig.perf.handle([0x90, 72, 90], 0.75)  # struck on time, but the loop comes back 100 ms late
    rig.perf.tick(0.85)
    assert [ev.steps for ev in rig.gen.followed_phrases[-1]] == [2, 2, 2, 2]


def test_continue_mode_starts_a_new_phrase_when_the_clock_stands_still_or_jumps_back():
    rig = Rig(clock="midi", mode="continue")
    rig.at(0.0, [0xF2, 8, 0])  # Song Position, transport stopped: the position stands still
    for t in (0.1, 0.6, 1.1):
        rig.at(t, [0x90, 60, 90])
        rig.at(t + 0.2, [0x80, 60, 0])
        assert len(rig.gen.followed_phrases[-1]) == 1  # no made-up one-step gaps between them


def test_continue_mode_streams_again_right_after_a_daw_start_even_from_a_chord_struck_while_stopped():
    """The chord struck while the DAW is stopped plans the stream from the stopped song position;
    Start sets the position back to 0, so that plan would wait 16 beats. The stream goes on at once."""
    rig = Rig(clock="midi", mode="continue")
    pulse = 60 / (120 * 24)
    t = 0.0
    rig.at(t, [0xFA])
    for _ in range(24 * 16):  # 16 beats running
        rig.at(t, [0xF8])
        t += pulse
    rig.at(t, [0xFC])  # Stop: all notes off
    rig.at(t + 1.0, [0x90, 60, 90])  # a chord struck while stopped
    rig.at(t + 1.2, [0x80, 60, 0])
    t += 2.0
    rig.at(t, [0xFA])  # Start: the position starts again at 0
    before = len(rig.ons())
    for _ in range(24 * 2):  # two beats
        t += pulse
        rig.at(t, [0xF8])
    assert len(rig.ons()) > before


def test_midi_clock_drives_the_answer_and_stop_ends_every_note():
    rig = Rig(clock="midi", answer_beats=4)
    pulse = 60 / (100 * 24)  # 100 bpm
    t = 0.0
    rig.at(t, [0xFA])
    times = [t]
    rig.at(t, [0xF8])  # pulse 0 comes with Start
    play(rig, 0.01, 60, 0.1)
    rig.at(0.2, [0xB0, 85, 127])
    for _ in range(24 * 3):
        t += pulse
        rig.at(t, [0xF8])
        times.append(t)
    ons = rig.ons()
    assert ons, "the clock should have started the answer"
    # every note lands exactly on a pulse that ends a grid step (6 pulses), from beat 1 on
    for when, _ in ons:
        index = min(range(len(times)), key=lambda i: abs(times[i] - when))
        assert abs(times[index] - when) < 1e-9 and index % 6 == 0
    assert rig.tempo.bpm == pytest.approx(100, rel=1e-6)
    rig.at(t + 0.001, [0xFC])  # Stop
    assert rig.sounding_after() == set()
    assert [0xB0, 123, 0] in [m for _, m in rig.sent]
    count = len(rig.sent)
    rig.advance(t + 2)
    assert len(rig.sent) == count  # stopped transport: nothing plays


def test_garbage_input_is_counted_and_never_raises():
    rig = Rig()
    rng = random.Random(5)
    for i in range(5000):
        data = [rng.randrange(256) for _ in range(rng.randrange(0, 5))]
        rig.perf.handle(data, i * 1e-4)
    rig.perf.handle([0xF0, 1, 2, 3, 0xF7], 0.6)
    rig.perf.handle([0x90, 200, 1], 0.6)
    assert rig.perf.dropped > 1000
    assert rig.perf.stats["dropped: sysex"] >= 1
    play(rig, 1.0, 60)
    rig.advance(3.0)
    assert rig.ons()  # still answering


def test_parse_reads_the_messages_we_use():
    assert parse([0x93, 60, 0]) == ("note_off", 3, 60, 0)
    assert parse([0x90, 60, 5]) == ("note_on", 0, 60, 5)
    assert parse([0xF2, 0x10, 0x01]) == ("songpos", 0, 0x90, 0)
    assert parse([0xF8]) == ("clock", 0, 0, 0)
    assert parse([0x90, 60]) == "garbage (wrong length)"
    assert parse([60, 60, 60]) == "garbage (no status byte)"


def test_tracker_never_sends_two_ons_for_one_off_and_panics_every_channel():
    sent = []
    tracker = NoteTracker(sent.append)
    tracker.note_on(0, 60, 100)
    tracker.note_on(0, 60, 100)
    tracker.note_on(9, 36, 100)
    assert sent == [[0x90, 60, 100], [0x80, 60, 0], [0x90, 60, 100], [0x99, 36, 100]]
    tracker.panic()
    assert sent[-4:] == [[0x80, 60, 0], [0x89, 36, 0], [0xB0, 123, 0], [0xB9, 123, 0]]
    assert not tracker.sounding


def test_panic_still_sends_the_rest_when_one_send_fails():
    sent = []

    def flaky(m):
        if m[1] == 60:
            raise OSError("port gone")
        sent.append(m)

    tracker = NoteTracker(flaky)
    tracker.sounding = {(0, 60), (0, 62)}
    tracker.channels_used = {0}
    with pytest.raises(OSError, match="port gone"):
        tracker.panic()
    assert [0x80, 62, 0] in sent and [0xB0, 123, 0] in sent and not tracker.sounding


def test_keys_held_when_a_call_ends_by_cc_are_not_counted_as_dropped_input():
    """The end-of-call CC over a held chord counted each key as a 'stuck input note' and its later
    release as a 'note-off without note-on': 4 dropped for a 2-note chord, none of it lost."""
    rig = Rig(answer_beats=1)
    rig.at(0.0, [0x90, 60, 90], [0x90, 64, 90])
    rig.at(0.4, [0xB0, rig.cfg.end_call_cc, 127])
    rig.at(0.6, [0x80, 60, 0], [0x80, 64, 0])
    rig.advance(2.0)
    assert rig.perf.stats["answers"] == 1 and rig.perf.dropped == 0
    again = Rig(mode="continue", max_held_beats=4)  # on, on, off: ended at its release, not stuck
    again.at(0.0, [0x90, 60, 90])
    again.at(0.3, [0x90, 60, 90])
    again.at(0.32, [0x80, 60, 0])
    again.advance(4.0)
    assert again.perf.dropped == 0 and not again.perf.listener.held


def test_stuck_input_note_is_released_and_counted():
    listener = Listener(Codec().grid, 0.03)
    listener.note_on(0, 60, 90, 0.0, 0.0)
    listener.release_stuck(10.0, 200.0, 128)
    assert listener.dropped["stuck input note"] == 1 and not listener.held
    listener.note_off(0, 61, 10.0, 200.0)
    assert listener.dropped["note-off without note-on"] == 1


def test_chords_played_legato_are_read_as_chords_whatever_the_grid_s_phase():
    """A player lifts a chord 20 ms before the next (0.16 of a step at 120 bpm). Rounded on its own,
    that lift became a sixteenth's rest after every chord whenever the phrase began between 0.5 and
    0.66 of a step (the daemon's grid starts when it does): 15 events for 8 chords, seen live."""
    for phase in np.arange(0.0, 1.0, 0.05):
        listener = Listener(Codec().grid, 0.03)
        for k in range(8):
            on = phase + 4 * k  # a chord a beat, in steps
            for pitch in (48, 55, 64):
                listener.note_on(0, pitch + k % 2, 90, on / 8, on)
            for pitch in (48, 55, 64):
                listener.note_off(0, pitch + k % 2, on / 8 + 0.48, on + 3.84)
        events, _ = listener.take_phrase()
        assert [(len(ev.pitches), ev.steps) for ev in events[:7]] == [(3, 4)] * 7, phase
        assert len(events) == 8 and len(events[7].pitches) == 3  # the last: its own 3.84 steps, rounded
    overlap = Listener(Codec().grid, 0.03)  # the first chord let go 37 ms after the second came
    for pitches, on, off in (((48, 55, 64), 0.3, 4.6), ((50, 57, 65), 4.3, 8.3)):
        for pitch in pitches:
            overlap.note_on(0, pitch, 90, on / 8, on)
        for pitch in pitches:
            overlap.note_off(0, pitch, off / 8, off)
    assert [ev.pitches for ev in overlap.take_phrase()[0]] == [(48, 55, 64), (50, 57, 65)]
    staccato = Listener(Codec().grid, 0.03)  # a real lift, over half a step, stays a rest
    for k, on in enumerate((0.0, 4.0)):
        staccato.note_on(0, 60 + k, 90, on / 8, on)
        staccato.note_off(0, 60 + k, on / 8 + 0.25, on + 2.0)
    assert [ev.steps for ev in staccato.take_phrase()[0]] == [2, 2, 2]


def test_a_long_note_let_go_a_little_early_is_not_followed_by_a_rest():
    """A whole note let go at 95% of its length lifts 0.8 of a step before the next: under the half
    step that makes any lift legato, it was read as a sixteenth rest. A lift under an eighth of
    the note's length is articulation; a quarter's sixteenth rest (a lift of a whole step) stays."""
    listener = Listener(Codec().grid, 0.03)
    for k, (on, played) in enumerate(((0.0, 15.2), (16.0, 4.0), (21.0, 7.6), (29.0, 3.8))):  # 16, 4 + 1, 8, 4
        listener.note_on(0, 60 + k, 90, on / 8, on)
        listener.note_off(0, 60 + k, (on + played) / 8, on + played)
    assert [(ev.pitches, ev.steps) for ev in listener.take_phrase()[0]] == [
        ((60,), 16),
        ((61,), 4),
        ((), 1),
        ((62,), 8),
        ((63,), 4),
    ]
    last = Listener(Codec().grid, 0.03)  # the last chord, a half note, its voices let go one by one
    for pitch, on, off in ((55, 0.0, 3.8), (62, 0.0, 3.9), (50, 4.0, 11.3), (57, 4.0, 11.6), (66, 4.0, 12.2)):
        last.note_on(0, pitch, 90, on / 8, on)
        last.note_off(0, pitch, off / 8, off)
    assert [(ev.pitches, ev.steps) for ev in last.take_phrase()[0]] == [((55, 62), 4), ((50, 57, 66), 8)]
    melody = Listener(Codec().grid, 0.03)  # but a note overlapping the last one is not part of it
    for pitch, on, off in ((60, 4.0, 8.2), (64, 8.0, 12.35), (62, 12.0, 12.7)):
        melody.note_on(0, pitch, 90, on / 8, on)
        melody.note_off(0, pitch, off / 8, off)
    assert [ev.pitches for ev in melody.take_phrase()[0]] == [(60,), (64,), (62,)]
    instant = Listener(Codec().grid, 0.03)  # a last note let go as it was struck: nothing to gather
    instant.note_on(0, 60, 90, 0.0, 0.0)
    instant.note_off(0, 60, 0.0, 0.0)
    assert instant.take_phrase()[0]
    moving = Listener(Codec().grid, 0.03)  # a whole note let go 1.1 steps early, another voice moving
    for pitch, on, off in ((48, 0.0, 14.9), (64, 0.0, 14.0), (65, 14.0, 16.0), (60, 16.0, 20.0)):
        moving.note_on(0, pitch, 90, on / 8, on)
        moving.note_off(0, pitch, off / 8, off)
    assert [ev.steps for ev in moving.take_phrase()[0]] == [14, 2, 4]  # the bass lasts to 16, no rest
    voices = Listener(Codec().grid, 0.03)  # a held bass let go 1.2 steps early, across the upper voice's move
    notes = ((48, 0.0, 22.8), (64, 0.0, 11.4), (67, 12.0, 23.4))
    for pitch, on, _ in notes:
        voices.note_on(0, pitch, 90, on / 8, on)
    for pitch, _, off in sorted(notes, key=lambda n: n[2]):
        voices.note_off(0, pitch, off / 8, off)
    voices.note_on(0, 50, 90, 3.0, 24.0)
    voices.note_off(0, 50, 3.5, 28.0)
    assert [(ev.pitches, ev.steps) for ev in voices.take_phrase()[0]] == [
        ((48, 64), 12),
        ((48, 67), 12),
        ((50,), 4),
    ]


def test_a_pitch_struck_again_before_its_release_is_read_as_two_whole_notes():
    """Repeated notes played legato by a sequencer or with human timing: the second G comes 0.2 of
    a step before the first is let go. That late release is the first note's: it used to end the
    new note too, read as a sixteenth and a rest, and the chord phrase's answer collapsed."""
    listener = Listener(Codec().grid, 0.03)
    played = []
    for pitches, on, off in (((55, 59, 62), 0.0, 4.1), ((55, 60, 64), 3.9, 7.8), ((55, 59, 62), 8.0, 11.8)):
        played += [(on, listener.note_on, pitch, 90) for pitch in pitches]
        played += [(off, listener.note_off, pitch) for pitch in pitches]
    for pos, handler, *message in sorted(played, key=lambda m: m[0]):
        handler(0, *message, pos / 8, pos)
    events, _ = listener.take_phrase()
    assert [(ev.pitches, ev.steps) for ev in events] == [
        ((55, 59, 62), 4),
        ((55, 60, 64), 4),
        ((55, 59, 62), 4),
    ]
    assert not listener.dropped and not listener.held and not listener.owed  # read, nothing dropped
    once = Listener(Codec().grid, 0.03)  # a device that re-strikes with no release between: on, on, off
    once.note_on(0, 60, 90, 0.0, 0.0)
    once.note_on(0, 60, 90, 0.25, 2.0)
    once.note_off(0, 60, 0.75, 6.0)  # long after the re-strike: the new note's own release
    assert [(ev.pitches, ev.steps) for ev in once.take_phrase()[0]] == [((60,), 2), ((60,), 4)]
    short = Listener(Codec().grid, 0.03)  # on, on, off, the off soon after: a short second note
    short.note_on(0, 60, 90, 0.0, 0.0)
    short.note_on(0, 60, 90, 0.25, 2.0)
    short.note_off(0, 60, 0.28, 2.25)  # taken for the old note's, while no other comes
    assert not short.phrase_ready(0.7, 0.5) and short.phrase_ready(0.78, 0.5)  # a beat later: over
    assert [(ev.pitches, ev.steps) for ev in short.take_phrase()[0]] == [((60,), 2), ((60,), 1)]
    assert not short.held and not short.swallowed
    ended = Listener(Codec().grid, 0.03)  # the same, the call ended by CC at once (release_stuck)
    ended.note_on(0, 60, 90, 0.0, 0.0)
    ended.note_on(0, 60, 90, 0.25, 2.0)
    ended.note_off(0, 60, 0.28, 2.25)
    ended.release_stuck(0.4, 3.2, -1)
    assert ended.finished[-1][1:3] == (2.0, 2.25)  # ended at its release, not at the CC
    moved = Listener(Codec().grid, 0.03)  # the position went back (a DAW's Start) after a re-strike
    moved.note_on(0, 60, 90, 0.0, 8.0)
    moved.note_on(0, 60, 90, 0.1, 8.2)
    moved.note_off(0, 60, 2.0, 0.3)  # a release at the new position 0.3 ends the note
    assert not moved.held
    three = Listener(Codec().grid, 0.03)  # three overlapping Cs (two sources): on, on, on, off, off, off
    for pos in (0.0, 2.0, 4.0):
        three.note_on(0, 60, 90, pos / 8, pos)
    for pos in (4.2, 4.3, 8.0):
        three.note_off(0, 60, pos / 8, pos)
    assert [ev.steps for ev in three.take_phrase()[0]] == [2, 2, 4]  # the newest was cut to 1
    thrice = Listener(Codec().grid, 0.03)  # struck three times within half a step: no note is lost
    for pos in (0.0, 0.1, 0.2):
        thrice.note_on(0, 60, 90, pos / 8, pos)
    thrice.note_off(0, 60, 0.5, 4.0)
    assert not thrice.held and len(thrice.finished) == 3


def test_with_the_internal_clock_a_phrase_is_read_on_a_grid_of_its_own():
    """Nobody plays to the daemon's own grid. A phrase begun half a step into it, played 20 ms
    unevenly (0.16 of a step), rounded on that grid, had a quarter become an eighth or a dotted
    eighth; on a grid from its first onset it is the player's quarters."""
    offsets = (0.0, 0.16, -0.16, 0.1, -0.1, 0.16, 0.0, -0.16)
    read = {}
    for own_grid in (False, True):
        listener = Listener(Codec().grid, 0.03, own_grid=own_grid)
        for k, off in enumerate(offsets):
            on = 0.45 + 4 * k + off
            listener.note_on(0, 60 + k, 90, on / 8, on)
            listener.note_off(0, 60 + k, on / 8 + 0.48, on + 3.84)
        read[own_grid] = [ev.steps for ev in listener.take_phrase()[0]]
    assert read[True][:7] == [4] * 7
    assert read[False][:7] != [4] * 7  # the daemon's grid: what the player did not play
    assert Performer(Config(), FakeGenerator(), InternalTempo(120, 4, 0.0), print).listener.own_grid
    assert not Performer(
        replace(Config(), clock="midi"), FakeGenerator(), MidiClockTempo(4), print
    ).listener.own_grid


def test_a_phrase_s_own_grid_fits_all_its_onsets_not_the_first_alone():
    """The first chord came 0.4 of a step early and the fourth 0.15 late. Measured from the first
    onset, the fourth sat 12.55 steps on and was read a step late (4, 4, 5, 3); on the grid that
    fits every onset it is where it was played."""
    listener = Listener(Codec().grid, 0.03, own_grid=True)
    for k, off in enumerate((-0.4, 0.0, 0.0, 0.15, 0.0, 0.0, 0.0, 0.0)):
        on = 10.0 + 4 * k + off
        for pitch in (55, 59, 62):
            listener.note_on(0, pitch + k % 2, 90, on / 8, on)
        for pitch in (55, 59, 62):  # let go on time
            listener.note_off(0, pitch + k % 2, (on - off + 3.84) / 8, on - off + 3.84)
    assert [ev.steps for ev in listener.take_phrase()[0]][:7] == [4] * 7


# a phrase in sixteenths to wholes (steps), and how unevenly each onset is played (steps)
WRITTEN = [2, 2, 1, 1, 2, 4, 2, 2, 4, 4, 8, 2, 2, 6, 4]
UNEVEN = [0.0, 0.15, -0.1, 0.05, -0.15, 0.1, 0.0, -0.05, 0.15, -0.1, 0.1, 0.0, -0.15, 0.05, 0.1]


def play_at(listener: Listener, tempo: float, steps: list[int] = WRITTEN, start: float = 3.3) -> None:
    """`steps` played legato at `tempo` times the listener's tempo (120 bpm), UNEVEN, from `start`."""
    at = start
    for k, (length, off) in enumerate(zip(steps, UNEVEN, strict=False)):
        on = at + off / tempo
        listener.note_on(0, 60 + k, 90, on / 8, on)
        listener.note_off(0, 60 + k, (on + 0.95 * length / tempo) / 8, on + 0.95 * length / tempo)
        at += length / tempo


def test_a_phrase_played_away_from_bpm_is_read_at_the_tempo_it_was_played():
    """Eighths played at 96 bpm into a daemon at 120 are 2.5 of its steps: read on its grid they
    came out as 2s and 3s (and the answer played at 120). With the tempo followed they are eighths,
    and the listener says how much faster or slower the player was."""
    for tempo in (0.8, 0.9, 1.0, 1.1, 1.25):
        listener = Listener(Codec().grid, 0.03, own_grid=True, follow_tempo=True)
        play_at(listener, tempo)
        assert [ev.steps for ev in listener.take_phrase()[0]] == WRITTEN, tempo
        assert listener.factor == pytest.approx(tempo, rel=0.01)
        assert listener.origin == pytest.approx(3.3, abs=0.1 / tempo)  # the first onset, on their grid
        fixed = Listener(Codec().grid, 0.03, own_grid=True)
        play_at(fixed, tempo)
        assert ([ev.steps for ev in fixed.take_phrase()[0]] == WRITTEN) == (tempo == 1.0), tempo
        assert fixed.factor == 1.0


def test_the_tempo_is_read_from_four_onsets_or_more_and_prefers_common_note_values():
    """A quarter note at 100 bpm is 4.8 steps at 120: as quarters at 100 bpm or as five-sixteenth
    notes at 125, the near tempo would win; the gaps music has decide. Three onsets say nothing."""
    assert fit_tempo({k * 4.8 for k in range(8)})[0] == pytest.approx(100 / 120, rel=0.01)
    assert fit_tempo({0.0, 4.8, 9.6})[0] == 1.0
    assert fit_tempo({k * 2.0 for k in range(8)}, 0.9, 1.1)[:3:2] == pytest.approx((1.0, 0.0))


def test_swung_eighths_are_read_at_the_tempo_they_swing_to():
    """Eighths swung 2:1 at 120 bpm (onsets 0, 2.67, 4, 6.67 ... steps) fitted a straight grid
    best as an eighth and a sixteenth at 90 bpm: the answer came at three quarters of the player's
    tempo, off their beat. Fitted with swing, they are read at 120, as they were before the tempo
    was followed (2:1 as a dotted eighth and a sixteenth, 7:5 as eighths)."""
    for ratio, swing, gaps in ((2 / 3, 2 / 3, [3, 1]), (7 / 12, 1 / 3, [2, 2])):
        listener = Listener(Codec().grid, 0.03, own_grid=True, follow_tempo=True)
        for beat in range(6):
            for k, at in enumerate((0.0, 4 * ratio)):
                on = 1.7 + 4 * beat + at + UNEVEN[2 * beat + k] / 2
                listener.note_on(0, 60 + k, 90, on / 8, on)
                listener.note_off(0, 60 + k, on / 8 + 0.2, on + 1.6)
        starts = events_to_notes(listener.take_phrase()[0])[:, 1]
        assert np.diff(starts).tolist() == (gaps * 6)[:11]
        assert (round(listener.factor, 2), listener.swing) == (1.0, swing)
        assert listener.origin == pytest.approx(1.7, abs=0.1)
    pickup = Listener(Codec().grid, 0.03, own_grid=True, follow_tempo=True)
    for k, on in enumerate([2.67] + [4.0 * beat + at for beat in range(1, 6) for at in (0.0, 2.67)]):
        on += 1.7  # from a swung off-beat: the answer's beats count from where it was played
        pickup.note_on(0, 60 + k, 90, on / 8, on)
        pickup.note_off(0, 60 + k, on / 8 + 0.15, on + 1.2)
    pickup.take_phrase()
    assert pickup.swing == pytest.approx(2 / 3) and pickup.origin == pytest.approx(4.37, abs=0.05)
    dotted = {4.0 * beat + at for beat in range(6) for at in (0.0, 3.0)}  # a dotted rhythm, straight
    assert fit_tempo(dotted)[0] == pytest.approx(1.0, rel=0.01)


def test_a_chord_spread_wider_than_the_chord_window_does_not_move_the_tempo():
    """A chorale player's chord, its notes struck up to 50 ms apart (more than the 30 ms window),
    is several onsets a fraction of a step apart: fitted one by one they drew the tempo up to 25%
    faster, to give each a step of its own. The tempo is read from the chords."""
    spread = (0.0, 0.3, 0.1, 0.4)  # steps after the chord's first note (0.4 is 50 ms at 120 bpm)
    onsets = {4.0 * k + UNEVEN[k] + off for k in range(8) for off in spread[: 2 + k % 3]}
    assert fit_tempo(onsets)[0] == pytest.approx(1.0, abs=0.01)


def test_respond_mode_answers_at_the_tempo_the_phrase_was_played_on_the_player_s_beat():
    """Eighths at 100 bpm (0.3 s) into a daemon at 120: the answer plays at 100 bpm, from the
    player's next beat, for the beats asked (theirs); the tempo stays theirs, and the status says so.
    With follow_tempo off, it is read and answered at 120."""
    rig = Rig(answer_beats=2)
    for k in range(6):
        play(rig, 0.1 + 0.3 * k, 60 + k, 0.28)  # their beats: 0.1 + 0.6 k; the last let go at 1.88
    rig.advance(4.0)
    assert rig.tempo.bpm == pytest.approx(100, rel=0.005) and rig.tempo.source == "the player's"
    assert [ev.steps for ev in rig.gen.primed[-1]] == [2] * 6
    ons = rig.ons()
    assert ons[0][0] == pytest.approx(2.5, abs=0.003)  # a beat of silence from 1.88: their beat at 2.5
    assert ons[1][0] - ons[0][0] == pytest.approx(0.6, abs=0.003)  # SCRIPT's 4 steps at 100 bpm
    offs = [t for t, m in rig.sent if m[0] & 0xF0 == 0x80]
    assert max(offs) - ons[0][0] == pytest.approx(1.2, abs=0.003)  # two of their beats
    fixed = Rig(answer_beats=2, follow_tempo=False)
    for k in range(6):
        play(fixed, 0.1 + 0.3 * k, 60 + k, 0.28)
    fixed.advance(4.0)
    assert fixed.tempo.bpm == 120 and fixed.tempo.source == "internal"
    assert [ev.steps for ev in fixed.gen.primed[-1]] != [2] * 6
    midi = Rig("midi", answer_beats=2)  # a DAW's clock is the tempo: never followed
    assert not midi.perf.listener.follow_tempo


def test_continue_mode_streams_at_the_tempo_the_chords_are_struck_at():
    """Quarters at 100 bpm (0.6 s) into a daemon at 120: from the eighth, the tempo playing is theirs,
    the phrase followed is read in their steps (4, not 0.6 s = 4.8 of the daemon's) and the stream
    goes on half of their beat after their last note, in their steps. Until the eighth, and with
    follow_tempo off, it keeps 120; a player at 120 keeps it exactly."""
    rig = Rig(mode="continue", chord_ms=30)
    for k in range(7):
        play(rig, 0.1 + 0.6 * k, 60 + k, 0.55)
    assert rig.tempo.bpm == 120
    for k in range(7, 8):
        play(rig, 0.1 + 0.6 * k, 60 + k, 0.55)  # the last struck at 4.3
    rig.advance(6.0)
    assert rig.tempo.bpm == pytest.approx(100, rel=0.005) and rig.tempo.source == "the player's"
    assert [ev.steps for ev in rig.gen.followed_phrases[-1]] == [4] * 7 + [2]
    ons = [t for t, _ in rig.ons() if t > 4.3]
    assert ons[0] == pytest.approx(4.3 + 0.3 + 0.03, abs=0.003)  # half their beat, a chord window late
    assert ons[1] - ons[0] == pytest.approx(0.6 - 0.03, abs=0.003)  # SCRIPT's 4 steps at 100 bpm
    fixed = Rig(mode="continue", chord_ms=30, follow_tempo=False)
    for k in range(8):
        play(fixed, 0.1 + 0.6 * k, 60 + k, 0.55)
    fixed.advance(6.0)
    assert fixed.tempo.bpm == 120 and fixed.tempo.source == "internal"
    assert [ev.steps for ev in fixed.gen.followed_phrases[-1]] == [5] * 7 + [2]
    assert next(t for t, _ in fixed.ons() if t > 4.3) == pytest.approx(4.3 + 0.25 + 0.03, abs=0.003)
    steady = Rig(mode="continue", chord_ms=30)
    for k, late in enumerate([0, 0.01, -0.01, 0.005, 0, -0.005, 0.01, 0]):
        play(steady, 0.1 + 0.5 * k + late, 60 + k, 0.45)
    steady.advance(6.0)
    assert steady.tempo.bpm == 120 and steady.tempo.source == "internal"


def test_continue_mode_refines_the_tempo_it_follows_chord_by_chord():
    """A tempo read from the first eight chords is about a percent out. It used to snap to itself
    from then on (each later reading within 0.5% of it counted as it), and the stream drifted off
    the player's grid; followed, each chord now refines it."""
    rig = Rig(mode="continue", chord_ms=30)
    uneven = [0.03, 0, 0, 0, 0, 0, 0, -0.03]  # quarters at 100 bpm, the first eight a little uneven
    for k in range(32):
        play(rig, 0.1 + 0.6 * k + (uneven[k] if k < 8 else 0.0), 60 + k % 8, 0.55)
        if k == 7:
            assert abs(rig.tempo.bpm / 100 - 1) > 0.005
    assert rig.tempo.bpm == pytest.approx(100, rel=0.0005)


def test_continue_mode_s_stream_goes_on_from_the_player_s_grid_not_their_last_note_alone():
    """The stream goes on half a beat after the player's last chord. Placed from that chord as
    heard, it was off their grid by however early or late they struck it; once their tempo is read,
    it goes on from where the grid fitted to the phrase's chords puts it."""
    rig = Rig(mode="continue", chord_ms=30)
    for k in range(16):  # quarters at 100 bpm, the last 40 ms late
        play(rig, 0.1 + 0.6 * k + (0.04 if k == 15 else 0.0), 60 + k % 8, 0.5)
    rig.advance(12.0)
    first = next(t for t, _ in rig.ons() if t > 9.14)
    assert first == pytest.approx(9.1 + 0.3 + 0.03, abs=0.012)  # not 9.14 + 0.3 + 0.03


def test_continue_mode_follows_the_tempo_of_rolled_chords():
    """A chord rolled wider than the chord window comes as groups a fraction of a step apart; each
    started a new phrase, so the tempo, read from eight chords of one, was never followed."""
    rig = Rig(mode="continue", chord_ms=30)
    for k in range(16):  # three-note chords in quarters at 100 bpm, each rolled over 80 ms
        t = 0.1 + 0.6 * k
        for j, d in enumerate((0.0, 0.04, 0.08)):
            rig.at(t + d, [0x90, 60 + 4 * j, 90])
        for j in range(3):
            rig.at(t + 0.5, [0x80, 60 + 4 * j, 0])
    assert rig.tempo.bpm == pytest.approx(100, rel=0.005)


def test_continue_mode_s_stream_comes_in_where_a_swinging_player_s_next_eighth_falls():
    """Swung eighths (2:1) at 100 bpm: the off-beat falls 0.4 s after the beat, the next beat 0.2 s
    after it. The stream went on half a straight beat (0.3 s) after the player's last note, over
    their late off-beat after a downbeat; it now comes in where their next eighth falls."""
    for ends_on_the_beat in (True, False):
        rig = Rig(mode="continue", chord_ms=30)
        for b in range(8):
            play(rig, 0.1 + 0.6 * b, 60, 0.35)
            if b < 7 or not ends_on_the_beat:
                play(rig, 0.1 + 0.6 * b + 0.4, 62, 0.15)
        last = 0.1 + 0.6 * 7 + (0.0 if ends_on_the_beat else 0.4)
        rig.advance(last + 2.0)
        assert rig.tempo.bpm == pytest.approx(100, rel=0.005)
        first = next(t for t, _ in rig.ons() if t > last)
        assert first - last == pytest.approx((0.4 if ends_on_the_beat else 0.2) + 0.03, abs=0.005)


def test_continue_mode_warns_once_a_phrase_of_chords_beyond_the_tempos_followed(caplog):
    """At a tempo's bound the readings of a player there fall either side of it from chord to
    chord, and each crossing warned again (41 warnings in 200 chords)."""
    rig = Rig(mode="continue", chord_ms=30)
    rig.tempo.set_bpm(240, 0.0, followed=True)  # twice bpm: the fastest followed
    gaps = [0.0625 * g for g in (4, 2, 2, 3, 1, 2, 2)]  # sixteenths at 240 bpm
    with caplog.at_level("INFO", logger="midiseed.daemon.core"):
        t = 0.1
        for k in range(100):
            play(rig, t, 60 + k % 5, 0.05)
            t += gaps[k % len(gaps)] * (1.003 if k % 2 else 0.997)
    assert caplog.text.count("beyond the tempos followed") <= 1


def test_continue_mode_takes_up_a_new_tempo_after_a_bar_s_rest_and_a_change_inside_a_phrase():
    """The tempo was read from the phrase's last 32 chords: after a bar's rest, eighths at 135 where
    they had been at 100 were still read near 100 24 chords on. A bar's silence now starts the
    reading afresh (a whole note held does not). Inside a phrase, quarters moving from 100 to 125
    bpm were read as a cross-rhythm at 83 bpm for good (a swing reading absorbed the misfit); the
    refinement now keeps the phrase's feel, and once the chords are beyond it the tempo is read
    afresh from the last eight."""
    rig = Rig(mode="continue", chord_ms=30)
    t = 0.1
    for k in range(32):
        bpm = 100 if k < 16 else 135
        if k == 16:
            t += 4 * 0.6  # a bar's rest at 100 bpm
        play(rig, t, 60 + k % 5, 0.9 * 30 / bpm)
        t += 30 / bpm  # eighths
    assert rig.tempo.bpm == pytest.approx(135, rel=0.01)
    held = Rig(mode="continue", chord_ms=30)
    for k in range(24):  # quarters at 100 bpm, the 16th a whole note
        play(held, 0.1 + 0.6 * k + (1.8 if k > 15 else 0.0), 60 + k % 5, 2.35 if k == 15 else 0.55)
    assert len(held.perf.struck_times) == 24  # one reading, the whole note inside it
    rig = Rig(mode="continue", chord_ms=30)
    t = 0.1
    for k in range(64):
        gap = 0.6 if k < 16 else 0.48  # quarters at 100, then at 125
        play(rig, t, 60 + k % 5, 0.9 * gap)
        t += gap
    assert rig.tempo.bpm == pytest.approx(125, rel=0.01)


def test_continue_mode_s_rest_is_a_break_in_the_pattern_not_any_silence():
    """A bar's silence restarts the tempo's reading, but only where it breaks the phrase's pattern:
    staccato chords stabbed once a bar (2.2 s of silence each) restarted it at every chord and were
    never followed. A key whose only release came soon after its re-strike (a device sending on,
    on, off) hid the silence before a new tempo. A panic kept the swing the last phrase was read
    with, and the next phrase was refined in it."""
    stabs = Rig(mode="continue", chord_ms=30)
    for k in range(16):  # once a bar at 100 bpm, held 0.2 s
        play(stabs, 0.1 + 2.4 * k, 60 + k % 3, 0.2)
    assert stabs.tempo.bpm == pytest.approx(100, rel=0.005)
    rig = Rig(mode="continue", chord_ms=30)
    t = 0.1
    for k in range(32):
        if k == 16:
            t += 4 * 0.6  # a bar's rest at 100 bpm, after a key sent on, on, off
        bpm = 100 if k < 16 else 135
        if k == 15:  # struck again 0.15 s on, and one release 50 ms after that
            rig.at(t, [0x90, 64, 90])
            rig.at(t + 0.15, [0x90, 64, 90])
            rig.at(t + 0.2, [0x80, 64, 0])
        else:
            play(rig, t, 60 + k % 5, 0.9 * 30 / bpm)
        t += 30 / bpm
    assert rig.tempo.bpm == pytest.approx(135, rel=0.01)
    swung = Rig(mode="continue", chord_ms=30)
    for b in range(8):
        play(swung, 0.1 + 0.6 * b, 60, 0.35)
        play(swung, 0.1 + 0.6 * b + 0.4, 62, 0.15)
    assert swung.perf.stream_swing == pytest.approx(2 / 3)
    swung.at(5.5, [0xB0, 123, 0])  # a panic
    assert swung.perf.stream_swing is None


def test_a_followed_tempo_stays_within_reach_of_bpm():
    """Phrase after phrase slower, the tempo follows down to half the configured bpm, no further."""
    rig = Rig(answer_beats=1)
    t, tempos = 0.0, []
    for _ in range(6):
        gap = 60 / rig.tempo.bpm / 2 * 1.25  # eighths at 0.8 x the tempo playing
        for k in range(6):
            play(rig, t + gap * k, 60 + k, gap * 0.9)
        t += gap * 6 + 3.0
        rig.advance(t)
        rig.perf.cancel()
        tempos.append(rig.tempo.bpm)
    assert tempos[:3] == pytest.approx([96, 76.8, 61.44], rel=0.01)
    assert min(tempos) == pytest.approx(60) and all(bpm >= 60 for bpm in tempos)


def test_a_phrase_beyond_the_tempos_followed_is_logged_as_such_not_as_followed(caplog):
    """Eighths at 0.7 x the tempo playing (out of the 1.3x it follows) were read at the slowest
    tempo allowed, and the log said "following the player's tempo", as for a phrase followed."""
    rig = Rig(answer_beats=1)
    gap = 60 / 120 / 2 / 0.7
    with caplog.at_level("INFO", logger="midiseed.daemon.core"):
        for k in range(8):
            play(rig, 0.1 + gap * k, 60 + k, gap * 0.9)
        rig.advance(8.0)
    assert rig.tempo.bpm == pytest.approx(120 / 1.3)
    assert "beyond the tempos followed now (92.3-156.0 bpm): read at 92.3 bpm" in caplog.text
    assert "following the player's tempo" not in caplog.text


def test_a_phrase_beyond_a_tempo_at_its_floor_is_logged_too(caplog):
    """At half bpm the range is [1, 1.3]: a slower phrase is read at the tempo playing (factor 1),
    and the warning, tested inside `factor != 1`, never came."""
    rig = Rig(answer_beats=1)
    rig.tempo.set_bpm(60, 0.0, followed=True)
    gap = 60 / 54 / 2  # eighths at 54 bpm
    with caplog.at_level("INFO", logger="midiseed.daemon.core"):
        for k in range(8):
            play(rig, 0.1 + gap * k, 60 + k, gap * 0.9)
        rig.advance(10.0)
    assert rig.tempo.bpm == 60
    assert "beyond the tempos followed now (60.0-78.0 bpm): read at 60.0 bpm" in caplog.text


def test_a_phrase_at_the_tempo_playing_is_read_at_it_exactly_and_the_beat_woken_for_ahead(caplog):
    """A tempo fitted within 0.5% of the one playing is that one (the fit's noise moved the answer
    off the beat, and every phrase at 120 was logged as followed). The loop wakes where the tempo
    is read, half the silence after the last release, not at the next 50 ms tick."""
    for tempo in (1.0, 1.003):
        rig = Rig(answer_beats=1)
        gap = 0.25 / tempo
        with caplog.at_level("INFO", logger="midiseed.daemon.core"):
            for k in range(8):  # 6 ms uneven at most
                play(rig, 0.1 + gap * k + UNEVEN[k] / 24, 60 + k, gap * 0.9)
            release = 0.1 + gap * 7 + UNEVEN[7] / 24 + gap * 0.9
            assert rig.perf.next_deadline(release + 0.24) == pytest.approx(release + 0.25)
            rig.advance(4.0)
        assert (rig.tempo.bpm, rig.tempo.source, rig.perf.listener.factor) == (120, "internal", 1.0), tempo
    assert "following the player's tempo" not in caplog.text


def test_a_tempo_at_its_floor_or_ceiling_follows_back():
    """A tempo a rounding error past half or twice bpm (59.99999999999999: 64.5 bpm times
    60 / 64.5) put the tempo playing outside the range a phrase may be read at, and it never
    followed again. The range always holds the tempo playing, and a tempo never leaves its bounds."""
    for start, then in ((59.99999999999999, 1.25), (240.00000000000003, 0.8)):
        rig = Rig(answer_beats=1)
        rig.tempo.set_bpm(start, 0.0, followed=True)
        gap = 60 / start / 2 / then  # eighths at `then` times the tempo playing
        for k in range(8):
            play(rig, 0.1 + gap * k, 60 + k, gap * 0.9)
        rig.advance(6.0)
        assert rig.tempo.bpm == pytest.approx(start * then, rel=0.01)
        assert 60 <= rig.tempo.bpm <= 240


def test_a_phrase_read_at_the_edge_of_the_range_is_read_alike_whenever_it_is_played():
    """A player faster than the range allows has their phrase read at the fastest tempo allowed.
    The grid's phase came from the line fitted at their own tempo, whose intercept sits at
    position 0 of the whole run: the same phrase was read differently an hour in. It is fitted
    to the phrase at the tempo allowed."""
    reads = set()
    for start in (10.0, 500.0, 2000.0, 8000.0):
        listener = Listener(Codec().grid, 0.03, own_grid=True, follow_tempo=True)
        listener.tempo_range = (1 / 1.3, 1.3)
        play_at(listener, 1.36, start=start)
        reads.add(tuple(ev.steps for ev in listener.take_phrase()[0]))
        assert listener.factor == pytest.approx(1.3)
        assert listener.origin == pytest.approx(start, abs=0.3)
    assert len(reads) == 1  # (not as written: the player is faster than the range allows)


def test_internal_tempo_change_keeps_position_continuous():
    tempo = InternalTempo(120, 4, 0.0)
    assert tempo.position(1.0) == pytest.approx(8)
    tempo.set_bpm(60, 1.0)
    assert tempo.position(1.0) == pytest.approx(8)
    assert tempo.position(2.0) == pytest.approx(12)
    assert tempo.time_of(12) == pytest.approx(2.0)


def test_config_file_errors_name_the_key(tmp_path):
    path = tmp_path / "c.toml"
    for text, message in [
        ("[timing]\nbpm = 'fast'", "[timing] bpm must be a number"),
        ("[timing]\nbpm = 1000", "bpm must be in 20..400"),
        ("[midi]\ncolour = 1", "unknown key [midi] colour"),
        ("[sound]\nx = 1", "unknown section [sound]"),
        ("midi = 3", "midi = 3 is not a section: write [midi] and its keys under it"),
        ("[performance]\nmode = 'jam'", "mode must be one of respond, continue"),
        ("[midi]\nin_channels = [0]", "in_channels must list MIDI channels 1..16"),
        ("[timing\n", "not valid TOML"),
        ("[cc]\npanic_cc = 85", "[cc] end_call_cc and panic_cc are both CC 85; give each its own"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load(path)
    assert override(Config(), bpm=90, mode=None).bpm == 90


def test_shipped_config_documents_every_key_with_its_default():
    from midiseed.cli.serve import DEFAULT_CONFIG
    from midiseed.daemon.config import SECTIONS

    assert load(DEFAULT_CONFIG) == Config()
    text = DEFAULT_CONFIG.read_text()
    for keys in SECTIONS.values():
        for key in keys:
            assert f"\n{key} = " in text, key


def test_serve_user_errors_exit_2_with_one_line(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[decoding]\ntemperature = -1\n")
    for args, message in [
        (["--config", str(bad)], "temperature must be in 0..10"),
        (["--bpm", "5000"], "bpm must be in 20..400"),
        (["--mode", "jam"], "mode must be one of respond, continue"),
        (["--model", str(tmp_path / "none.onnx")], "does not exist"),
        (["--config", str(tmp_path / "none.toml")], "does not exist"),
    ]:
        result = runner.invoke(app, ["serve", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_bunched_clock_pulses_all_count_but_a_flood_is_dropped():
    tempo = MidiClockTempo(4)
    tempo.on_message("start", 0.0)
    t = 0.0
    for i in range(48):
        t += 0.02 if i % 2 == 0 else 0.0001  # pairs of pulses arriving together (a JACK period)
        tempo.on_message("clock", t)
    assert tempo.pulses == 47 and tempo.dropped == 0
    assert tempo.bpm == pytest.approx(60 / (0.0101 * 24), rel=0.05)
    for _ in range(1000):  # a thousand pulses in a tenth of a second
        t += 0.0001
        tempo.on_message("clock", t)
    assert tempo.dropped > 900


def test_next_deadline_is_now_for_what_fell_due_since_the_tick():
    # between a tick and the service's next_deadline() time passes (generation, status, ports):
    # what fell due in it is due now, not at the 50 ms fallback
    rig = Rig(answer_beats=4)
    play(rig, 0.0, 60, 0.2)  # released at 0.2: a beat of silence ends at 0.7
    assert rig.perf.next_deadline(0.68) == 0.7
    assert rig.perf.next_deadline(0.75) == 0.75  # the answer is due, no tick has started it yet
    rig.advance(1.1)  # the answer's first note went out at 1.0; the next are due at 1.5
    assert rig.perf.next_note_time() == 1.5 and rig.perf.next_deadline(1.49) == 1.5
    assert rig.perf.next_deadline(1.5005) == 1.5005
    rig.perf.tick(1.5005)
    assert rig.perf.next_deadline(1.5005) > 1.5005  # sent: nothing is due, no spin
    stream = Rig(mode="continue", chord_ms=30)
    stream.at(0.0, [0x90, 60, 90])
    assert stream.perf.next_deadline(0.0) == 0.03 and stream.perf.next_deadline(0.0305) == 0.0305


def test_next_deadline_does_not_spin_for_a_note_waiting_for_its_clock_pulse():
    rig = Rig(clock="midi")
    rig.at(0.0, [0xFA], [0xF8])
    play(rig, 0.01, 60, 0.03)
    rig.at(0.05, [0xB0, 85, 127])  # end of call: the answer starts on beat 1, pulse 24
    t = 0.0
    for _ in range(23):
        t += 0.025
        rig.at(t, [0xF8])
    due = rig.perf.next_note_time()
    assert due == pytest.approx(t + 0.025) and not rig.ons()
    late = due + 0.01  # the DAW's pulse is late: the note waits for it, and the service sleeps
    rig.perf.tick(late)
    assert not rig.ons() and rig.perf.next_deadline(late) > late
    rig.at(late, [0xF8])
    assert rig.ons() == [(late, 60)]


def test_continue_mode_serves_the_pitch_guard_by_default_and_each_mode_keeps_its_own(tmp_path):
    from midiseed.daemon.config import load
    from midiseed.daemon.service import Service

    rig = Rig()  # respond, the file's defaults: pitch guard off for answers, on for the stream
    assert not rig.gen.decoding.pitch_guard
    rig.at(0.0, [0xB0, 86, 127])  # continue
    assert rig.gen.decoding.pitch_guard
    rig.at(0.1, [0xB0, 107, 0])  # off, by CC, for the stream playing
    assert not rig.gen.decoding.pitch_guard
    rig.at(0.2, [0xB0, 86, 0])  # respond: the file's setting for answers
    assert not rig.gen.decoding.pitch_guard
    rig.at(0.3, [0xB0, 86, 127])  # continue again: the file's setting for the stream
    assert rig.gen.decoding.pitch_guard
    conf = tmp_path / "config.toml"
    conf.write_text("[performance]\nmode = 'continue'\n")
    assert Service._generator(load(conf)).decoding.pitch_guard  # started in continue mode
    conf.write_text("[performance]\nmode = 'continue'\n[decoding]\npitch_guard_continue = false\n")
    assert not Service._generator(load(conf)).decoding.pitch_guard
    assert not Service._generator(load(None)).decoding.pitch_guard  # respond
