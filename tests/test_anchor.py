"""The anchor: from `Decoding.anchor` events into an answer that follows the phrase, the answer stays
where the phrase was (its own register, its bass, the pitch guard on); before that, nothing changes."""

import numpy as np
import pytest

from midiseed.errors import BadValue
from midiseed.evaluate.behaviour import loop_share
from midiseed.runtime.codec import Codec, Event
from midiseed.runtime.generate import Generator
from midiseed.runtime.sampling import MAX_ANCHOR, Decoding, Grammar, Steering
from tests.conftest import check_decoding_key
from tests.test_loop_guard import FixedEngine

codec = Codec()


def chord(*pitches: int, steps: int = 4) -> Event:
    return Event(tuple(pitches), (False,) * len(pitches), steps)


def first_pitches(grammar: Grammar) -> set[int]:
    """The pitches the grammar allows as an event's first (lowest) note."""
    return {
        codec.pitch_of(int(t)) for t in np.flatnonzero(grammar.allowed()) if not codec.is_duration(int(t))
    }


# Two parts over an octave, lowest notes 52, 55, 57 before the last event: the bass went no higher
# than 57
TWO_PARTS = [chord(52, 62), chord(55, 64), chord(57, 64), chord(52, 62)]
# A fake model that climbs: it likes G4 and A4, above the phrase, then notes within it
CLIMBS = FixedEngine(
    *(codec.struck(p) for p in (67, 69, 57, 64, 62, 55, 52)), *(codec.duration(s) for s in (4, 8, 2))
)


def test_anchored_steering_is_the_phrase_own_register_and_bass():
    followed = Steering.follow(TWO_PARTS)
    anchored = Steering.follow(TWO_PARTS, anchor=True)
    assert (followed.low, followed.high, followed.bass) == (47, 69, 127)  # five semitones either side
    assert (anchored.low, anchored.high, anchored.bass) == (52, 64, 57)
    assert (anchored.voices, anchored.least) == (followed.voices, followed.least) == (2, 2)
    melody = [chord(p) for p in (60, 62, 64, 65, 67)]
    assert Steering.follow(melody, anchor=True).bass == 127  # a single line has no bass to keep
    # a narrow phrase is widened to an octave, never past the followed register: one key pressed in
    # `continue` mode still leaves a line room to move
    assert (Steering.follow(melody, anchor=True).low, Steering.follow(melody, anchor=True).high) == (57, 70)
    one = Steering.follow([chord(60)], anchor=True)
    assert (
        (one.low, one.high)
        == (55, 65)
        == (Steering.follow([chord(60)]).low, Steering.follow([chord(60)]).high)
    )


def test_the_bass_ceiling_bounds_only_an_event_s_lowest_note():
    grammar = Grammar(codec, steering=Steering(bass=60))
    assert max(first_pitches(grammar)) == 60
    grammar.feed(codec.struck(55))
    assert max(first_pitches(grammar)) == 127  # the notes above the bass are free
    # no pitch at or under the ceiling in the register: the ceiling gives way, the register holds
    high = Grammar(codec, steering=Steering(low=64, high=72, bass=60))
    assert first_pitches(high) == set(range(64, 73))


def test_nothing_changes_before_the_anchor_and_after_it_the_answer_stays_where_the_phrase_was():
    plain = Generator(CLIMBS, Decoding(loop_guard=32))
    plain.prime(TWO_PARTS)
    drifting = plain.generate(16)
    assert {ev.pitches for ev in drifting} == {(67, 69)}  # above the phrase, in the followed register
    gen = Generator(CLIMBS, Decoding(loop_guard=32, anchor=6))
    gen.prime(TWO_PARTS)
    answer = gen.generate(6)
    assert answer == drifting[:6] and gen.in_force is gen.anchored
    answer = gen.generate(16)
    assert all(52 <= ev.pitches[0] <= 57 and ev.pitches[-1] <= 64 and len(ev.pitches) == 2 for ev in answer)
    # and the pitch guard is on: the same two notes do not come back again and again
    assert loop_share([ev.pitches for ev in answer], 8) < 0.5
    # a new phrase starts the count again
    gen.prime(TWO_PARTS)
    assert gen.answered == 0 and gen.in_force is gen.followed
    assert gen.generate(6) == drifting[:6]


def test_a_steering_set_by_hand_is_never_anchored_and_the_anchor_can_be_switched_live():
    from tests.test_loop_guard import Rotating  # the same chord at ever other lengths: a pitch loop

    hand = Steering(voices=2, low=50, high=70, least=2)
    answers = []
    for anchor in (0, 2):
        gen = Generator(Rotating(), Decoding(loop_guard=32, anchor=anchor), steering=hand)
        gen.prime(TWO_PARTS)
        answers.append(gen.generate(12))
        assert gen.in_force is hand and not gen.anchoring
    assert answers[0] == answers[1]  # not even the pitch guard: the player's steering wins whole
    live = Generator(CLIMBS, Decoding(loop_guard=32))
    live.prime(TWO_PARTS)
    live.generate(8)
    assert live.in_force is live.followed
    live.decoding = Decoding(loop_guard=32, anchor=4)  # switched on past its count: it holds at once
    assert live.in_force is live.anchored and live.grammar.steering is live.anchored
    assert max(ev.pitches[-1] for ev in live.generate(4)) <= 64
    live.decoding = Decoding(loop_guard=32)
    assert live.grammar.steering is live.followed


@pytest.mark.parametrize("bad", [-1, MAX_ANCHOR + 1])
def test_anchor_range_is_checked(bad):
    with pytest.raises(BadValue, match="anchor"):
        Decoding(anchor=bad)


def test_anchor_from_config_cc_and_generate_with_the_shipped_model(tmp_path):
    """The shipped model answering a chorale phrase for 160 events: its bass climbs; anchored after
    64 events, it stays at or under the phrase's."""
    from typer.testing import CliRunner

    from midiseed.cli import app
    from midiseed.daemon.config import Config
    from midiseed.runtime.codec import Grid, notes_to_events
    from midiseed.runtime.midifile import read_notes
    from tests.test_daemon_unit import Rig

    assert Config().anchor == 0  # off by default (MODEL_CARD, "Long answers")
    assert check_decoding_key(tmp_path, "anchor", "64", "5000").decoding.anchor == 64
    rig = Rig()
    rig.at(0.0, [0xB0, 108, 64])
    assert rig.gen.decoding.anchor == 64
    rig.at(0.1, [0xB0, 108, 0])
    assert rig.gen.decoding.anchor == 0

    phrase = "G3+D4+B4+G5 A3+D4+C5+F#5 B3+D4+B4+G5 C4+E4+A4+G5 D4+F#4+A4+A5 G3+D4+B4+G5 " * 2
    grid = Grid()
    seed = notes_to_events(read_notes(_write_seed(tmp_path, phrase), grid), grid)
    bass_ceiling = Steering.follow(seed, grid.max_poly, margin=0, anchor=True).bass
    lows = []
    for anchor in ("0", "64"):
        out = tmp_path / f"anchor{anchor}.mid"
        args = ["generate", "--out", str(out), "--seed-notes", phrase, "--steps", "160", "--anchor", anchor]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        late = notes_to_events(read_notes(out, grid), grid)[len(seed) + 64 :]
        lows.append(max(ev.pitches[0] for ev in late if ev.pitches))
    assert lows[1] <= bass_ceiling < lows[0], (lows, bass_ceiling)


def _write_seed(tmp_path, phrase: str):
    """The phrase as a MIDI file, read back as `generate` reads a seed."""
    from midiseed.runtime.codec import events_to_notes
    from midiseed.runtime.generate import parse_seed_notes
    from midiseed.runtime.midifile import write_notes

    path = tmp_path / "seed.mid"
    write_notes(events_to_notes(parse_seed_notes(phrase, 4)), path)
    return path
