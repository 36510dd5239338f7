"""The loop guard: no pattern of up to `loop_guard` events runs past 1.5 times its length, unless the
phrase heard did so itself; everything else stays the likeliest choice."""

import itertools

import numpy as np
import pytest

from midiseed.errors import BadValue
from midiseed.evaluate.behaviour import loop_share
from midiseed.runtime.codec import Codec, Event
from midiseed.runtime.generate import Generator
from midiseed.runtime.memory import Memory
from midiseed.runtime.sampling import Decoding, loop_refusals, periodic_runs
from tests.conftest import check_decoding_key

codec = Codec()


def note(pitch: int, steps: int = 4) -> Event:
    return Event((pitch,), (False,), steps)


A, B, C, D = note(60), note(62), note(64), note(65)


class FixedEngine:
    """A fake model (unit tests only) that always ranks the same tokens first: greedy decoding then
    plays one event again and again, the worst loop there is."""

    def __init__(self, *ranked: int) -> None:
        self.codec = codec
        self.logits = np.full(len(codec), -20.0, dtype=np.float32)
        for rank, token in enumerate(ranked):
            self.logits[token] = 10.0 - rank

    def zero_state(self):
        return None

    def run(self, tokens, state):
        return np.tile(self.logits, (1, tokens.shape[1], 1)), state

    def step(self, token, state):
        return self.logits, state


LIKES_C4 = FixedEngine(
    codec.struck(60), codec.duration(4), codec.duration(2), codec.duration(8), codec.duration(6)
)


def test_periodic_runs_finds_only_patterns_played_twice_in_full():
    assert periodic_runs([A, A, A, B], 8) == {1: 3}
    assert periodic_runs([A, B, A, B, A, C], 8) == {2: 5}
    assert periodic_runs([A, B, C, A, B], 8) == {}  # the period-3 pattern is not played twice
    assert periodic_runs([A, B, C, D, A, B, C, D], 2) == {}  # longer than the periods asked for


def test_refuses_the_event_that_would_play_a_pattern_one_and_a_half_times():
    assert loop_refusals([C, A], 8) == {A}  # A A: period 1 twice
    assert loop_refusals([C, A, B], 8) == {B}  # B B is refused, A B A allowed (3 <= 1.5 * 2)
    assert loop_refusals([C, A, B, A], 8) == {B, A}  # A B A B; and A A
    assert loop_refusals([A, B, C, A], 8) == {B, A}  # A B C A B would be 5 > 4.5; A A
    assert loop_refusals([A, B, C, D, A], 8) == {A}  # A B C D A B is 6 <= 6; A A
    assert loop_refusals([A, B, C, D, A, B], 8) == {C, B}  # A B C D A B C is 7 > 6; B B


def test_refuses_nothing_the_phrase_heard_did_itself():
    allow = periodic_runs([A, A, A, B], 8)
    assert loop_refusals([C, A, A], 8, allow) == set()  # A A A: as long as the phrase's run
    assert loop_refusals([C, A, A, A], 8, allow) == {A}
    assert loop_refusals([C, A], 0) == set()  # off


def test_loop_guard_range_is_checked():
    with pytest.raises(BadValue, match="loop_guard"):
        Decoding(loop_guard=65)


def test_greedy_loops_for_ever_and_the_guard_breaks_it_with_the_next_likeliest_choice():
    plain = Generator(LIKES_C4, Decoding())
    plain.prime([note(62, 2)])
    assert plain.generate(32) == [A] * 32
    guarded = Generator(LIKES_C4, Decoding(loop_guard=32))
    guarded.prime([note(62, 2)])
    answer = guarded.generate(32)
    assert loop_share(answer, 32) == 0.0
    assert all(ev.pitches == (60,) for ev in answer)  # only the duration gives way
    assert answer[:3] == [A, note(60, 2), A]


def test_the_guard_lets_the_answer_repeat_as_the_phrase_did():
    seed = [B, B, B, D]  # the player struck one note three times
    gen = Generator(LIKES_C4, Decoding(loop_guard=32))
    gen.prime(seed)
    answer = gen.generate(4)
    assert answer[:3] == [A, A, A] and answer[3] != A
    gen.reset()
    gen.prime([B, C, D])  # a phrase with no repeats: none in the answer either; and no note
    assert gen.generate(2) == [A, note(60, 8)]  # shorter than its own (4 steps): 2 is out, 8 next


def test_the_guard_costs_nothing_when_off():
    gen = Generator(LIKES_C4, Decoding(loop_guard=0))
    gen.prime([A, A, A])
    assert gen.generate(8) == [A] * 8


def chord(*pitches: int, steps: int = 4) -> Event:
    return Event(tuple(pitches), (False,) * len(pitches), steps)


# A fake model that strikes C4+E4 first, then G4, whatever came before; durations 4, 2, 8 in turn.
LIKES_C_MAJOR = FixedEngine(*(codec.struck(p) for p in (60, 64, 67)), *(codec.duration(s) for s in (4, 2, 8)))
TWO_PARTS = [chord(57, 62), chord(59, 64), chord(60, 64), chord(57, 62)]  # every event two voices


def test_in_two_voices_or_more_the_pitch_guard_hears_pitches_whatever_their_lengths():
    plain = Generator(LIKES_C_MAJOR, Decoding(loop_guard=32))  # the guard alone: lengths give way
    plain.prime(TWO_PARTS)
    assert [ev.pitches for ev in plain.generate(8)] == [(60, 64)] * 8
    gen = Generator(LIKES_C_MAJOR, Decoding(loop_guard=32, pitch_guard=True))
    gen.prime(TWO_PARTS)
    assert gen.in_force.least == 2  # the voice floor is on: the answer keeps two voices
    answer = gen.generate(24)
    pitches = [ev.pitches for ev in answer]
    assert all(len(p) == 2 for p in pitches)
    assert loop_share(answer, 32) == 0.0
    # Every event that repeats the one before in pitch was spelled again from another lowest note:
    # the same two notes struck again and again, at whatever length, is a loop to the ear.
    assert loop_share(pitches, 8) < 0.5
    assert pitches[:2] == [(60, 64), (64, 67)]


def test_in_one_voice_the_pitch_guard_lets_the_length_give_way_as_before():
    gen = Generator(LIKES_C_MAJOR, Decoding(loop_guard=32, pitch_guard=True))
    gen.prime([note(57), note(59), note(62)])
    assert gen.in_force.least == 0
    answer = gen.generate(3)
    assert [ev.pitches for ev in answer] == [(60,)] * 3  # a single line: the pitches stay
    assert [ev.steps for ev in answer] == [4, 8, 4]  # the length gives way (2 is faster than the phrase)


def test_respelling_puts_model_state_and_grammar_back_at_the_start_of_the_event():
    class Counting(FixedEngine):
        """Records every token the model is stepped with."""

        def __init__(self, *ranked: int) -> None:
            super().__init__(*ranked)
            self.fed: list[int] = []

        def step(self, token, state):
            self.fed.append(token)
            return self.logits, (state or 0) + 1  # the state counts tokens stepped

    engine = Counting(*np.argsort(-LIKES_C_MAJOR.logits)[:6])
    gen = Generator(engine, Decoding(loop_guard=32, pitch_guard=True))
    gen.prime(TWO_PARTS)
    gen.state = 0
    answer = gen.generate(6)
    assert len(engine.fed) > len(codec.encode(answer))  # some events were spelled more than once
    assert gen.state == len(codec.encode(answer))  # rewound spellings left no trace in the state
    assert gen.history[-len(codec.encode(answer)) :] == codec.encode(answer).tolist()


PROGRESSION = "C3+E4+G4+C5:2 A2+E4+A4+C5:2 F2+F4+A4+C5:2 G2+D4+G4+B4:2 " * 2  # C Am F G, twice


def test_pitch_guard_from_config_and_generate_with_the_shipped_model(tmp_path):
    """The shipped model answers a chord progression by striking each chord again at another length
    (a loop the length-only guard lets through); with --pitch-guard it moves on."""
    from typer.testing import CliRunner

    from midiseed.cli import app
    from midiseed.daemon.config import Config
    from midiseed.runtime.codec import Grid, notes_to_events
    from midiseed.runtime.midifile import read_notes

    assert not Config().pitch_guard  # off by default (MODEL_CARD, "Loop guard")
    assert check_decoding_key(tmp_path, "pitch_guard", "true", "1").decoding.pitch_guard
    grid = Grid()
    seed_events = len(PROGRESSION.split())
    shares = []
    for flag in ("--no-pitch-guard", "--pitch-guard"):
        out = tmp_path / f"{flag}.mid"
        args = ["generate", "--out", str(out), "--seed-notes", PROGRESSION, "--steps", "32", flag]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        answer = notes_to_events(read_notes(out, grid), grid)[seed_events:]
        assert all(len(ev.pitches) == 4 for ev in answer if ev.pitches)  # chords answered with chords
        shares.append(loop_share([ev.pitches for ev in answer], 8))
    assert shares[0] > 0.5 and shares[1] < shares[0] - 0.3, shares


def test_the_pitch_guard_never_thins_the_answer():
    """Three parts whose top is D4: the register ends at G4 (the phrase's top + 5), so spelling a
    refused C-E-G again from another lowest note (E-G) leaves no room for a third voice. The guard
    then keeps the three notes and lets the length give way instead."""
    three_parts = [chord(55, 59, 62), chord(53, 57, 62), chord(55, 59, 62), chord(50, 57, 62)]
    high_c = FixedEngine(
        *(codec.struck(p) for p in (60, 64, 67, 72)), *(codec.duration(s) for s in (4, 8, 12))
    )
    gen = Generator(high_c, Decoding(loop_guard=32, pitch_guard=True))
    gen.prime(three_parts)
    assert (gen.in_force.least, gen.in_force.high) == (3, 67)
    answer = gen.generate(6)
    assert [ev.pitches for ev in answer] == [(60, 64, 67)] * 6
    assert [ev.steps for ev in answer][:3] == [4, 8, 4]


class Rotating(FixedEngine):
    """Ranks C4, E4, G4, B4 first, as FixedEngine, but its favourite duration moves on (4, 8, 12,
    16 steps) each time an event ends: the same chord never comes twice at the same length, so only
    a guard that hears pitches alone hears the loop."""

    LENGTHS = (4, 8, 12, 16)

    def __init__(self) -> None:
        super().__init__(*(codec.struck(p) for p in (60, 64, 67, 71)))
        self.ended = 0

    def _logits(self):
        logits = self.logits.copy()
        for rank in range(len(self.LENGTHS)):
            logits[codec.duration(self.LENGTHS[(self.ended + rank) % len(self.LENGTHS)])] = 5.0 - rank
        return logits

    def run(self, tokens, state):
        return np.tile(self._logits(), (1, tokens.shape[1], 1)), state

    def step(self, token, state):
        if codec.is_duration(token):
            self.ended += 1
        return self._logits(), (self.ended, token)  # the state says what was stepped last

    def zero_state(self):
        return (0, None)


def test_the_pitch_guard_hears_a_chord_come_back_at_other_lengths():
    plain = Generator(Rotating(), Decoding(loop_guard=32))
    plain.prime(TWO_PARTS)
    answer = plain.generate(8)
    assert {ev.pitches for ev in answer} == {(60, 64)} and loop_share(answer, 8) == 0.0  # lengths vary
    guarded = Generator(Rotating(), Decoding(loop_guard=32, pitch_guard=True))
    guarded.prime(TWO_PARTS)
    pitches = [ev.pitches for ev in guarded.generate(8)]
    assert all(len(p) == 2 for p in pitches)
    assert all(a != b for a, b in itertools.pairwise(pitches))  # never the same chord twice running
    assert loop_share(pitches, 8) < 0.5


def test_respelling_forgets_what_the_memory_was_fed_of_the_refused_spellings():
    gen = Generator(Rotating(), Decoding(loop_guard=32, pitch_guard=True, memory=0.95))
    gen.prime(TWO_PARTS)
    answer = gen.generate(12)
    shadow = Memory(len(codec))
    for token in codec.encode(TWO_PARTS + answer).tolist():
        shadow.feed(token)
    n = gen.memory._n
    assert n == shadow._n and np.array_equal(gen.memory._tokens[:n], shadow._tokens[:n])
    assert np.array_equal(gen.memory._match[:n], shadow._match[:n])


def test_a_respelling_is_not_kept_as_fewer_struck_notes_than_the_chords_heard():
    """Block chords of four (the chord floor: four struck, none held) with a release between them
    (the voice floor: three): a refused chord spelled from another lowest note finds only three
    notes below the register's top, which the voice floor would pass but the chord floor does not."""
    release = Event((50, 55, 59), (True, True, True), 4)
    seed = [chord(50, 55, 59, 62), release, chord(48, 55, 60, 62), chord(50, 55, 59, 62)]
    engine = FixedEngine(
        *(codec.struck(p) for p in (55, 60, 64, 67)), *(codec.duration(s) for s in (4, 8, 12))
    )
    gen = Generator(engine, Decoding(loop_guard=32, pitch_guard=True))
    gen.prime(seed)
    steer = gen.in_force
    assert (steer.fewest, steer.least, steer.high) == (4, 3, 67)
    answer = gen.generate(4)
    assert [ev.pitches for ev in answer] == [(55, 60, 64, 67)] * 4


def test_a_respelling_that_comes_out_as_a_rest_is_not_kept():
    """A model that likes to end an event at once when its favourite note is taken away: respelled
    from another lowest note, the chord would become a rest."""
    engine = FixedEngine(codec.struck(60), codec.duration(4), codec.struck(64), codec.duration(8))
    gen = Generator(engine, Decoding(loop_guard=32, pitch_guard=True))
    gen.prime(TWO_PARTS)
    answer = gen.generate(8)
    assert all(ev.pitches for ev in answer), answer


def test_a_held_lowest_note_is_not_struck_again_in_the_respelling():
    """The same pitch struck instead of held is the same pitch set: a respelling moves on from the
    lowest note whether it was held or struck, so two respellings reach a chord not yet heard."""
    seed = [chord(50, 59), Event((50, 62), (True, False), 4), chord(48, 60), chord(60, 64), chord(48, 60)]
    ranked = (codec.held(48), codec.struck(48), *(codec.struck(p) for p in (60, 64, 67)), codec.duration(4))
    engine = FixedEngine(*ranked, codec.duration(8))
    gen = Generator(engine, Decoding(loop_guard=32, pitch_guard=True))
    gen.prime(seed)
    # held C3 + C4 repeats the last chord; C4 + E4 would make C-C / C-E twice over: both refused
    assert gen.next_event().pitches == (64, 67)
