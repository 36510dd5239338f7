import json

import numpy as np
import pytest

from midiseed.runtime.codec import (
    Codec,
    CodecError,
    Event,
    Grid,
    events_to_notes,
    notes_to_events,
    notes_to_tokens,
    parse_note_name,
)
from midiseed.runtime.tokens import encode_notes


def random_notes(rng: np.random.Generator, n: int = 60) -> np.ndarray:
    """Polyphonic notes that stay inside the grid's caps (so the round trip must be exact)."""
    notes = []
    for voice, base in enumerate((48, 60, 67, 76)):
        t = int(rng.integers(0, 4))
        for _ in range(n // 4):
            length = int(rng.integers(1, 12))
            if rng.random() < 0.15:
                t += int(rng.integers(1, 6))  # a rest in this voice
            notes.append((base + int(rng.integers(0, 7)) + voice, t, t + length))
            t += length
    arr = np.array(notes)
    arr[:, 1:] -= arr[:, 1].min()
    return arr[np.lexsort((arr[:, 0], arr[:, 1]))]


@pytest.mark.parametrize("seed", range(20))
def test_notes_round_trip_through_events_keeps_pitches_onsets_and_durations(seed):
    notes = random_notes(np.random.default_rng(seed))
    back = events_to_notes(notes_to_events(notes))
    np.testing.assert_array_equal(back, notes)


def test_repeated_pitch_is_struck_again_not_merged():
    notes = np.array([[60, 0, 4], [64, 0, 8], [60, 4, 8]])
    events = notes_to_events(notes)
    assert [e.key() for e in events] == ["60,64:4", "60,64_:4"]
    np.testing.assert_array_equal(events_to_notes(events), notes)


def test_long_notes_split_into_held_events_and_long_silence_is_capped():
    grid = Grid(max_steps=4, max_rest=8)
    notes = np.array([[60, 0, 10], [62, 100, 101]])
    events = notes_to_events(notes, grid)
    assert [e.key() for e in events] == ["60:4", "60_:4", "60_:2", "r:4", "r:4", "62:1"]


def test_overlapping_and_zero_length_notes_are_cleaned():
    notes = np.array([[60, 0, 8], [60, 2, 6], [62, 3, 3]])
    back = events_to_notes(notes_to_events(notes))
    np.testing.assert_array_equal(back, [[60, 0, 2], [60, 2, 6], [62, 3, 4]])


def test_polyphony_is_capped_keeping_bass_and_top():
    notes = np.array([[p, 0, 4] for p in range(40, 52)])
    (event,) = notes_to_events(notes, Grid(max_poly=4))
    assert event.pitches == (40, 49, 50, 51)


def test_event_key_round_trip_and_bad_keys():
    for key in ["r:3", "60:1", "48,60_,67:16"]:
        assert Event.from_key(key).key() == key
    for bad in ["", "60", "60:0", "x:4", "64,60:2", "200:1"]:
        with pytest.raises(CodecError):
            Event.from_key(bad)


def test_transposition_moves_pitches_and_refuses_out_of_range():
    ev = Event.from_key("60,64_:4")
    assert ev.transposed(2).key() == "62,66_:4"
    assert Event.from_key("125:1").transposed(5) is None


def test_events_are_spelled_as_pitch_tokens_closed_by_a_duration():
    codec = Codec()
    events = [Event.from_key("60,64_,67:4"), Event.from_key("r:2")]
    ids = codec.encode(events)
    assert [codec.keys[i] for i in ids] == ["N60", "H64", "N67", "D4", "D2"]
    assert codec.decode(ids) == events


@pytest.mark.parametrize("seed", range(5))
def test_notes_round_trip_through_token_ids(seed):
    codec = Codec()
    notes = random_notes(np.random.default_rng(100 + seed))
    back = events_to_notes(codec.decode(codec.encode(notes_to_events(notes))))
    np.testing.assert_array_equal(back, notes)


def test_vocabulary_is_bounded_and_inexpressible_events_map_to_the_nearest_expressible():
    codec = Codec(Grid(max_steps=8, max_poly=3))
    assert len(codec) == 128 + 128 + 8
    too_long = Event((60,), (False,), 20)
    assert [codec.keys[i] for i in codec.encode_event(too_long)] == ["N60", "D8", "H60", "D8", "H60", "D4"]
    too_many = Event((40, 50, 60, 70, 80), (False,) * 5, 2)
    assert codec.decode(codec.encode_event(too_many)) == [Event((40, 70, 80), (False,) * 3, 2)]


def test_any_token_sequence_decodes_without_crashing():
    codec = Codec()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, len(codec), 5000)
    events = codec.decode(ids)
    assert all(ev.pitches == tuple(sorted(set(ev.pitches))) for ev in events)
    assert all(len(ev.pitches) <= codec.grid.max_poly for ev in events)
    events_to_notes(events)  # and they always make notes
    with pytest.raises(CodecError):
        codec.decode([len(codec)])


def test_codec_json_round_trip_and_version_check():
    codec = Codec(Grid(steps_per_beat=8))
    again = Codec.from_json(codec.to_json())
    assert again.keys == codec.keys and again.grid == codec.grid
    data = json.loads(codec.to_json())
    data["codec_version"] = 99
    with pytest.raises(CodecError, match="version 99"):
        Codec.from_json(json.dumps(data))
    data["codec_version"] = 1
    data["vocab"] = data["vocab"][:-1]
    with pytest.raises(CodecError, match="does not match"):
        Codec.from_json(json.dumps(data))
    with pytest.raises(CodecError):
        Codec.from_json("{}")


@pytest.mark.parametrize(("name", "pitch"), [("C4", 60), ("F#3", 54), ("Bb5", 82), ("A0", 21), ("64", 64)])
def test_note_names(name, pitch):
    assert parse_note_name(name) == pitch


@pytest.mark.parametrize("bad", ["H4", "C", "C99", "", "Cx4"])
def test_bad_note_names(bad):
    with pytest.raises(CodecError):
        parse_note_name(bad)


def test_grammar_allows_held_pitches_only_while_sounding_and_not_for_ever():
    from midiseed.runtime.sampling import Grammar

    codec = Codec()
    grammar = Grammar(codec, max_hold_steps=8)
    for token in codec.encode([Event((60, 64), (False, False), 4)]):
        grammar.feed(int(token))
    ok = grammar.allowed()
    assert ok[codec.held(60)] and ok[codec.held(64)] and not ok[codec.held(62)]
    for token in codec.encode([Event((60, 64), (True, False), 4)]):
        grammar.feed(int(token))
    ok = grammar.allowed()
    assert not ok[codec.held(60)]  # held 8 steps: must be struck again or let go
    assert ok[codec.held(64)] and ok[codec.struck(60)]
    grammar.feed(codec.struck(62))
    ok = grammar.allowed()
    assert not ok[codec.struck(61)] and ok[codec.struck(63)] and ok[codec.duration(2)]  # ascending


def wild_notes(rng: np.random.Generator) -> np.ndarray:
    """Anything a MIDI file can give: dense chords past the polyphony cap, zero-length and negative
    notes, re-strikes of a sounding pitch, duplicates, long notes and long silences."""
    n = int(rng.integers(0, 250))
    span = int(rng.choice([4, 60, 600, 5000]))
    low = int(rng.integers(0, 100))
    pitch = rng.integers(low, 128, n)
    start = rng.integers(0, span, n)
    end = start + rng.integers(-2, int(rng.choice([3, 40, 400])), n)
    notes = np.stack([pitch, start, end], axis=1).reshape(-1, 3)
    if n and rng.random() < 0.3:  # exact duplicates and re-strikes
        notes = np.concatenate([notes, notes[: n // 3], notes[: n // 4] + np.array([0, 1, 0])])
    return notes


GRIDS = [Grid(), Grid(max_poly=3, max_steps=5, max_rest=7), Grid(steps_per_beat=8, max_steps=1, max_rest=1)]


@pytest.mark.parametrize("grid", GRIDS, ids=["default", "small", "tiny"])
def test_vectorised_tokens_equal_the_event_path_on_random_pieces(grid):
    codec = Codec(grid)
    rng = np.random.default_rng(7)
    for _ in range(150):
        notes = wild_notes(rng)
        want = codec.encode(notes_to_events(notes, grid))
        got = notes_to_tokens(notes, codec)
        assert got.dtype == np.int32
        assert got.tolist() == want.tolist()


def test_vectorised_tokens_cover_every_codec_rule():
    codec = Codec()
    notes = np.array(
        [[60, 0, 40]]  # long: split into held continuations of 16 steps
        + [[40 + k, 44, 46] for k in range(12)]  # 12 voices: capped to the lowest + 7 highest
        + [[70, 200, 202], [70, 201, 203]]  # a re-strike of a sounding pitch, after a 154-step rest
    )
    want = codec.encode(notes_to_events(notes))
    assert notes_to_tokens(notes, codec).tolist() == want.tolist()
    keys = [codec.keys[t] for t in want]
    assert keys[:6] == ["N60", "D16", "H60", "D16", "H60", "D8"]
    assert "D16" in keys[6:] and keys.count("N70") == 2  # the rest is capped at 32 = D16 D16


def test_vectorised_tokens_stop_at_a_whole_event_when_capped():
    codec = Codec()
    rng = np.random.default_rng(3)
    for _ in range(60):
        notes = wild_notes(rng)
        full = notes_to_tokens(notes, codec)
        for cap in {1, 7, max(1, len(full) // 2), max(1, len(full) - 1), len(full) + 5}:
            got, total = encode_notes(notes, codec, cap)
            assert total == len(full)
            assert len(got) <= cap and got.tolist() == full[: len(got)].tolist()
            assert len(got) == 0 or got[-1] >= 256  # ends on a duration
            if len(got) < len(full):  # and the next whole event would not have fitted
                next_end = len(got) + int(np.argmax(full[len(got) :] >= 256)) + 1
                assert next_end > cap
