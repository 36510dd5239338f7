"""The loop guard: no pattern of up to `loop_guard` events runs past 1.5 times its length, unless the
phrase heard did so itself; everything else stays the likeliest choice."""

import numpy as np
import pytest

from midiseed.errors import BadValue
from midiseed.evaluate.behaviour import loop_share
from midiseed.runtime.codec import Codec, Event
from midiseed.runtime.generate import Generator
from midiseed.runtime.sampling import Decoding, loop_refusals, periodic_runs

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
