"""Live steering in the daemon: the [steering] keys, the voices/register CCs and answer_beats = 0,
with made-up time (no sleeps) and the shipped model (a real onnxruntime session)."""

import pytest

from midiseed.daemon.config import ConfigError, load
from tests.test_daemon_unit import Rig, play


def shipped_generator():
    from midiseed.runtime.engine import Engine
    from midiseed.runtime.generate import Generator

    return Generator(Engine(provider="cpu"))


def answer_to_a_chord(rig: Rig, *ccs: int) -> list[tuple[float, list[int]]]:
    """CCs (number, value pairs), then C major spread over two octaves as the call; the answer's
    messages (8 beats at 120 bpm)."""
    for number, value in zip(ccs[::2], ccs[1::2], strict=True):
        rig.at(0.05, [0xB0, number, value])
    rig.at(0.1, [0x90, 48, 90], [0x90, 55, 90], [0x90, 64, 90], [0x90, 72, 90])
    rig.at(0.6, [0x80, 48, 0], [0x80, 55, 0], [0x80, 64, 0], [0x80, 72, 0])
    rig.advance(6.0)
    assert rig.perf.stats["answers"] == 1
    return [(t, m) for t, m in rig.sent if t >= 1.0]


def most_at_once(messages: list[tuple[float, list[int]]]) -> int:
    sounding: set[int] = set()
    most = 0
    for _, m in messages:
        if m[0] & 0xF0 == 0x90:
            sounding.add(m[1])
            most = max(most, len(sounding))
        elif m[0] & 0xF0 == 0x80:
            sounding.discard(m[1])
    return most


def pitches(messages: list[tuple[float, list[int]]]) -> set[int]:
    return {m[1] for _, m in messages if m[0] & 0xF0 == 0x90}


def test_the_answer_follows_the_calls_voices_and_register_by_default():
    messages = answer_to_a_chord(Rig(generator=shipped_generator()))
    assert 2 <= most_at_once(messages) <= 4  # chords, as the call was
    assert pitches(messages) <= set(range(48 - 5, 72 + 6))  # the call's range, widened a little


def test_voices_cc_1_makes_the_answer_a_single_line():
    messages = answer_to_a_chord(Rig(generator=shipped_generator()), 102, 1)
    assert len(messages) >= 4 and most_at_once(messages) == 1  # the same call answered with chords


def test_voices_in_config_and_cc_0_follows_again():
    rig = Rig(generator=shipped_generator(), voices=1)
    assert rig.gen.steering is not None and rig.gen.steering.voices == 1
    rig.at(0.01, [0xB0, 102, 0])
    assert rig.gen.steering is None  # all three follow: the generator follows the phrase itself


def test_register_ccs_keep_every_answer_pitch_in_range():
    messages = answer_to_a_chord(Rig(generator=shipped_generator()), 103, 60, 104, 67)
    assert messages and pitches(messages) <= set(range(60, 68))


def test_register_in_config_with_one_bound_following():
    rig = Rig(generator=shipped_generator(), low=62)
    messages = answer_to_a_chord(rig)
    assert messages and min(pitches(messages)) >= 62
    assert rig.gen.steering.high == 72 + 5  # the call's top, widened: followed


def test_a_low_cc_above_the_high_bound_is_a_register_between_them_not_an_error():
    rig = Rig(generator=shipped_generator(), high=60)
    messages = answer_to_a_chord(rig, 103, 70)
    assert messages and pitches(messages) <= set(range(60, 71))
    assert (rig.gen.steering.low, rig.gen.steering.high) == (60, 70)


def test_answer_beats_0_answers_as_long_as_the_call():
    rig = Rig(answer_beats=0)
    play(rig, 0.1, 60, 0.25)  # two steps
    play(rig, 0.35, 64, 0.5)  # four steps: a call of six steps, 1.5 beats
    rig.advance(5.0)
    ons = rig.ons()
    assert ons[0][0] == pytest.approx(1.6)  # the player's beat after the silence (their beats: 0.1 + k / 2)
    last = max(t for t, m in rig.sent if m[0] & 0xF0 == 0x80)
    assert last == pytest.approx(1.6 + 6 * 0.125)  # the answer ends after as many steps as the call took
    assert rig.sounding_after() == set()


def test_steering_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[steering]\nlow = 80\nhigh = 60\n")
    with pytest.raises(ConfigError, match=r"\[steering\] low must not be above high"):
        load(bad)
    bad.write_text("[steering]\nvoices = -1\n")
    with pytest.raises(ConfigError, match=r"\[steering\] voices must be in 0..127"):
        load(bad)


def test_continue_mode_streams_at_the_phrase_rate_and_range_not_around_the_last_key():
    """A chord progression played live in continue mode, a chord every two beats: the stream after
    it follows the phrase the chords make (their rate, their range), as respond mode answers it."""
    from midiseed.evaluate.follow import median_gap

    rig = Rig(mode="continue", generator=shipped_generator())
    chords = [(48, 55, 64), (45, 57, 64), (41, 57, 65), (43, 59, 62)] * 2
    for i, chord in enumerate(chords):  # 120 bpm: a chord each second, held 0.9 s
        rig.at(i * 1.0, *([0x90, p, 90] for p in chord))
        rig.at(i * 1.0 + 0.9, *([0x80, p, 0] for p in chord))
    heard = len(rig.gen.events)
    rig.advance(len(chords) + 12.0)  # 24 beats of stream after the last chord
    stream = [ev for ev in rig.gen.events[heard:] if ev.pitches]
    assert len(stream) >= 6
    low, high = rig.gen.in_force.low, rig.gen.in_force.high
    assert (low, high) == (41 - 5, 65 + 5)  # the whole progression's range, not one chord's
    assert median_gap(rig.gen.events[heard:]) >= 4  # no faster than quarter notes: the chords' rate is 8
