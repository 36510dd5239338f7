"""Live steering: the grammar caps voices and bounds the register, and the generator follows the seed."""

import numpy as np
import pytest
from typer.testing import CliRunner

from midiseed.cli import app
from midiseed.errors import BadValue
from midiseed.runtime.codec import Codec, Event
from midiseed.runtime.engine import Engine
from midiseed.runtime.generate import Generator, parse_seed_notes
from midiseed.runtime.midifile import read_notes
from midiseed.runtime.sampling import FOLLOW_MARGIN, LOOP_GUARD, VOICE_WINDOW, Decoding, Grammar, Steering

codec = Codec()


def struck(*pitches: int, steps: int = 2) -> Event:
    return Event(tuple(pitches), (False,) * len(pitches), steps)


def allowed_pitches(grammar: Grammar) -> set[int]:
    """The pitches (struck or held) the grammar allows next."""
    mask = grammar.allowed()
    return {codec.pitch_of(t) for t in np.flatnonzero(mask) if not codec.is_duration(int(t))}


def feed(grammar: Grammar, events: list[Event]) -> None:
    for t in codec.encode(events).tolist():
        grammar.feed(t)


def test_voices_one_allows_one_pitch_then_only_a_duration():
    grammar = Grammar(codec, steering=Steering(voices=1))
    assert allowed_pitches(grammar)
    grammar.feed(codec.struck(60))
    mask = grammar.allowed()
    assert mask[codec.duration(2)]
    assert not mask[codec.struck(64)] and not mask[codec.held(60)]


def test_voices_three_allows_a_triad_but_not_a_fourth_note():
    grammar = Grammar(codec, steering=Steering(voices=3))
    for p in (48, 52, 55):
        assert grammar.allowed()[codec.struck(p)]
        grammar.feed(codec.struck(p))
    assert allowed_pitches(grammar) == set()
    assert grammar.allowed()[codec.duration(4)]


def test_voices_above_the_codec_maximum_is_the_codec_maximum():
    grammar = Grammar(codec, steering=Steering(voices=100))
    for p in range(40, 40 + codec.grid.max_poly):
        grammar.feed(codec.struck(p))
    assert allowed_pitches(grammar) == set()


def test_register_bounds_struck_pitches_and_a_duration_is_always_allowed():
    grammar = Grammar(codec, steering=Steering(low=60, high=72))
    assert allowed_pitches(grammar) == set(range(60, 73))
    grammar.feed(codec.struck(72))  # the top of the register: nothing above it is left
    assert allowed_pitches(grammar) == set()
    assert grammar.allowed()[codec.duration(1)]


def test_a_held_pitch_now_outside_the_register_is_not_held_on():
    grammar = Grammar(codec)
    feed(grammar, [struck(48, 60, 67)])
    assert {48, 60, 67} <= allowed_pitches(grammar)
    grammar.steering = Steering(low=55, high=79)  # a live change, between events
    mask = grammar.allowed()
    assert not mask[codec.held(48)] and not mask[codec.struck(48)]
    assert mask[codec.held(60)] and mask[codec.held(67)]


def test_steering_set_mid_event_applies_to_the_next_token():
    grammar = Grammar(codec)
    grammar.feed(codec.struck(60))
    grammar.steering = Steering(voices=1)
    assert allowed_pitches(grammar) == set()


@pytest.mark.parametrize(
    "kwargs", [dict(voices=-1), dict(low=70, high=60), dict(high=128), dict(low=-1), dict(voices=128)]
)
def test_bad_steering_is_a_user_error(kwargs):
    with pytest.raises(BadValue):
        Steering(**kwargs)


def test_follow_takes_the_most_voices_and_widens_the_range():
    phrase = [struck(62, steps=2), struck(66, 69, steps=2), Event((), (), 2), struck(74, steps=4)]
    s = Steering.follow(phrase)
    assert s == Steering(voices=2, low=62 - FOLLOW_MARGIN, high=74 + FOLLOW_MARGIN, shortest=2)
    held = [struck(48, 52, 55, 60, steps=4), Event((48, 52, 55, 60, 64), (True,) * 4 + (False,), 4)]
    assert Steering.follow(held).voices == 5  # held pitches sound too
    assert Steering.follow(held, max_poly=4).voices == 4
    assert Steering.follow([struck(2), struck(126)]) == Steering(1, 0, 127, shortest=2)  # clipped to MIDI
    assert Steering.follow([Event((), (), 4)]) == Steering()  # no notes: no steering


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(None)


def chorale_like_seed() -> list[Event]:
    """A four-part phrase in C major: the shipped model answers it in four parts unless steered."""
    chords = [(48, 55, 64, 72), (53, 57, 65, 72), (55, 59, 62, 71), (48, 55, 64, 72)] * 2
    return [struck(*c, steps=4) for c in chords]


def test_greedy_generation_with_the_shipped_model_obeys_one_voice_and_a_register(engine):
    gen = Generator(engine, steering=Steering(voices=1, low=60, high=76))
    gen.prime(chorale_like_seed())
    events = gen.generate(48)
    assert all(len(ev.pitches) <= 1 for ev in events)
    assert any(ev.pitches for ev in events)
    assert all(60 <= p <= 76 for ev in events for p in ev.pitches)


def test_unsteered_shipped_model_answers_chords_so_the_cap_above_is_what_binds(engine):
    gen = Generator(engine, steering=Steering())
    gen.prime(chorale_like_seed())
    assert max(len(ev.pitches) for ev in gen.generate(48)) > 1


def test_generator_follows_the_seed_by_default_and_a_set_steering_wins(engine):
    melody = [struck(p, steps=2) for p in (62, 64, 66, 67, 69, 67, 66, 64, 62, 66, 69, 74)]
    gen = Generator(engine)
    gen.prime(melody)
    assert gen.in_force == Steering(1, 62 - FOLLOW_MARGIN, 74 + FOLLOW_MARGIN, shortest=2)
    events = gen.generate(32)
    assert all(len(ev.pitches) <= 1 for ev in events)
    assert all(62 - FOLLOW_MARGIN <= p <= 74 + FOLLOW_MARGIN for ev in events for p in ev.pitches)
    gen.steering = Steering(voices=2, low=40, high=90)
    assert gen.grammar.steering == Steering(2, 40, 90)
    gen.steering = None  # back to following the phrase heard
    assert gen.grammar.steering == gen.followed


def test_generate_command_takes_voices_and_a_register_by_name(tmp_path):
    out = tmp_path / "out.mid"
    args = ["generate", "--seed-notes", "C4+E4+G4 F4+A4+C5 G4+B4+D5 C4+E4+G4", "--steps", "24"]
    result = CliRunner().invoke(
        app, [*args, "--out", str(out), "--voices", "1", "--low", "C4", "--high", "72"]
    )
    assert result.exit_code == 0, result.output
    notes = read_notes(out, codec.grid)
    answer = notes[notes[:, 1] >= 16]  # after the seed's four beats
    assert len(answer) and set(answer[:, 0]) <= set(range(60, 73))
    _, counts = np.unique(answer[:, 1], return_counts=True)
    assert counts.max() == 1


def test_generate_command_refuses_a_register_upside_down(tmp_path):
    result = CliRunner().invoke(
        app,
        ["generate", "--seed-notes", "C4", "--out", str(tmp_path / "o.mid"), "--low", "C5", "--high", "C4"],
    )
    assert result.exit_code == 2
    assert "low" in result.output


def test_random_walks_under_random_steering_never_dead_end_and_always_obey_it():
    rng = np.random.default_rng(3)
    for _ in range(40):
        low = int(rng.integers(0, 120))
        steering = Steering(int(rng.integers(0, 5)), low, int(rng.integers(low, 128)))
        grammar = Grammar(codec)
        feed(grammar, [struck(*sorted(rng.choice(128, 3, replace=False).tolist()))])  # heard before
        grammar.steering = steering
        for _ in range(30):
            while True:
                mask = grammar.allowed()
                assert mask.any() and mask[codec.duration(1)]
                ev = grammar.feed(int(rng.choice(np.flatnonzero(mask))))
                if ev is not None:
                    break
            assert len(ev.pitches) <= (steering.voices or codec.grid.max_poly)
            assert all(steering.low <= p <= steering.high for p in ev.pitches)


def test_fewest_strikes_chords_whole_and_never_holds_a_note_into_one():
    grammar = Grammar(codec, steering=Steering(voices=4, low=40, high=80, fewest=3))
    durations = [codec.duration(n) for n in range(1, codec.grid.max_steps + 1)]
    assert grammar.allowed()[durations].all()  # a rest is still allowed
    grammar.feed(codec.struck(48))
    mask = grammar.allowed()
    assert not mask[durations].any()  # one note struck: not a chord yet
    assert mask[codec.struck(55)] and not mask[codec.held(55)]
    grammar.feed(codec.struck(55))
    assert not grammar.allowed()[durations].any()
    grammar.feed(codec.struck(64))
    assert grammar.allowed()[durations].all()  # three struck: the chord may end
    grammar.feed(codec.duration(4))
    mask = grammar.allowed()
    assert not mask[codec.held(48)] and not mask[codec.held(64)]  # nothing held on: strike or rest


def test_least_keeps_the_voices_sounding_held_or_struck():
    grammar = Grammar(codec, steering=Steering(voices=4, low=40, high=80, least=3))
    durations = [codec.duration(n) for n in range(1, codec.grid.max_steps + 1)]
    assert grammar.allowed()[durations].all()  # a rest is still allowed
    for p in (48, 55, 64):
        grammar.feed(codec.struck(p))
    grammar.feed(codec.duration(4))
    grammar.feed(codec.held(48))
    mask = grammar.allowed()
    assert not mask[durations].any()  # one voice sounding: not yet
    assert mask[codec.held(55)] and mask[codec.struck(57)]  # holding a voice counts as much as striking
    grammar.feed(codec.held(55))
    assert not grammar.allowed()[durations].any()
    grammar.feed(codec.struck(67))
    assert grammar.allowed()[durations].all()  # three sounding, one of them struck: it may end


def test_least_gives_way_when_no_pitch_is_left_in_the_register():
    grammar = Grammar(codec, steering=Steering(voices=4, low=40, high=62, least=3))
    grammar.feed(codec.struck(61))
    mask = grammar.allowed()
    assert mask[codec.struck(62)] and not mask[codec.duration(2)]
    grammar.feed(codec.struck(62))
    assert grammar.allowed()[codec.duration(2)]  # nothing above 62 allowed: the event may end


def test_shortest_keeps_struck_events_no_faster_than_the_phrase():
    grammar = Grammar(codec, steering=Steering(voices=4, shortest=4))
    assert grammar.allowed()[codec.duration(1)]  # a short rest is fine
    grammar.feed(codec.struck(60))
    mask = grammar.allowed()
    assert not mask[codec.duration(2)] and not mask[codec.duration(3)]
    assert mask[codec.duration(4)] and mask[codec.duration(8)]


def test_follow_takes_the_thinnest_chord_and_the_shortest_note_but_not_the_last():
    chords = [struck(48, 55, 64, steps=8), struck(45, 57, 60, 64, steps=8), struck(41, 57, 65, steps=2)]
    s = Steering.follow(chords)
    # the last chord's 2 steps may be cut short
    assert (s.voices, s.fewest, s.shortest, s.least) == (4, 3, 8, 3)
    melody = [struck(60, steps=2), struck(62, 64, steps=4), struck(65, steps=4)]
    assert Steering.follow(melody).fewest == 0  # one onset struck a single note: no floor
    assert Steering.follow(melody).least == 0  # one voice at times: no floor
    assert Steering.follow(melody).shortest == 2
    parts = [struck(48, 55, 64, 72, steps=4), Event((48, 55, 64, 74), (True, True, True, False), 2)]
    assert (Steering.follow(parts).least, Steering.follow(parts).fewest) == (4, 0)  # held voices count
    assert Steering.follow(parts).overridden(3, 40, 80).least == 3  # never above the voices set by hand
    with pytest.raises(BadValue):
        Steering(voices=2, fewest=3)
    with pytest.raises(BadValue):
        Steering(voices=2, least=3)


def test_the_voice_floor_follows_the_texture_the_phrase_ended_with():
    entries = [struck(60)] * 4 + [struck(53, 60)] * 4 + [struck(48, 53, 60, 64)] * (VOICE_WINDOW + 1)
    assert Steering.follow(entries).least == 4  # voices entered one by one: the floor is the latest
    assert Steering.follow([*entries, struck(48)]).least == 4  # the final event may be a release
    assert Steering.follow([*entries, struck(48), struck(60)]).least == 0  # a single line again: no floor
    assert Steering.follow([struck(48, 55, 64, steps=8)]).least == 3  # one chord: that chord
    # a chord let go one note at a time over three steps is a release, not the texture
    letting_go = [
        Event((48, 53, 60), (True,) * 3, 1),
        Event((48, 53), (True,) * 2, 1),
        Event((48,), (True,), 1),
    ]
    assert Steering.follow([*entries, *letting_go]).least == 4


def test_chords_over_a_held_bass_are_struck_as_thick_as_the_phrase_struck_them():
    phrase = [struck(36, 60, 64, steps=4), Event((36, 62, 65), (True, False, False), 4)] * 2
    s = Steering.follow(phrase)
    assert (s.fewest, s.least) == (2, 3)
    grammar = Grammar(codec, steering=s)
    grammar.feed(codec.struck(55))
    grammar.feed(codec.struck(60))
    assert grammar.allowed()[codec.duration(4)]  # two struck: as many as the phrase struck


def test_the_shipped_model_keeps_the_four_parts_of_a_chorale_phrase(engine):
    """The first 16 events of Bach's chorale BWV 24.6, parts moving in eighths over held ones: every
    event of the answer that sounds keeps four parts. Without the floor (`least`) the shipped model,
    served, thinned 4 of its 22 sounding events to three parts or two."""
    keys = (
        "45,61,64,69:2 45_,61_,65,69_:1 45_,61_,67,69_:1 50,62,65,69:2 48,62_,65_,69_:2 46,62,65,70:2"
        " 46_,58,65_,72:1 46_,58_,65_,74:1 48,57,65,72:2 48_,55,64,72_:1 48_,53,62,72_:1 48,55,64,70:1"
        " 48_,55_,64_,69:1 48_,55_,64_,70:2 41,60,65,69:4 53,60,65,69:2"
    )
    gen = Generator(engine, Decoding(loop_guard=LOOP_GUARD))  # as served
    gen.prime([Event.from_key(k) for k in keys.split()])
    assert gen.in_force.least == 4
    answer = [ev for ev in gen.generate(24) if ev.pitches]
    assert answer and all(len(ev.pitches) == 4 for ev in answer)
    assert any(any(ev.held) for ev in answer)  # parts may still hold while another moves


def test_the_shipped_model_answers_block_chords_with_block_chords_at_their_rate(engine):
    text = "C3+G3+C4+E4:2 A2+A3+C4+E4:2 F2+A3+C4+F4:2 G2+B3+D4+G4:2 " * 2
    seed = parse_seed_notes(text, codec.grid.steps_per_beat)
    gen = Generator(engine)
    gen.prime(seed)
    answer = [ev for ev in gen.generate(16) if ev.pitches]
    assert answer and all(len(ev.pitches) == 4 and not any(ev.held) for ev in answer)
    assert all(ev.steps >= 8 for ev in answer)
