"""`midiseed.bench.stream`: a phrase played note by note into the daemon's Performer in continue
mode, on made-up time, and the "follows the seed" table measured that way."""

import pytest

from midiseed.bench.stream import stream_live
from midiseed.evaluate.follow import follow_table
from midiseed.runtime.codec import Event
from midiseed.runtime.engine import Engine
from midiseed.runtime.generate import parse_seed_notes
from midiseed.runtime.sampling import Decoding, Steering
from tests.test_daemon_unit import SCRIPT, FakeGenerator

# four onsets: C, then E held over into the next event while G is struck, then a chord
PHRASE = [
    Event((60,), (False,), 4),
    Event((64,), (False,), 2),
    Event((64, 67), (True, False), 2),
    Event((60, 64, 67), (False, False, False), 4),
]


def test_every_onset_is_read_as_the_daemon_reads_it_and_the_stream_after_the_last_is_returned():
    gen = FakeGenerator()
    out = stream_live(gen, PHRASE, events=10)
    assert [ev.pitches for evs in gen.primed for ev in evs] == [(60,), (64,), (67,), (60, 64, 67)]
    assert [ev.pitches for ev in gen.followed_phrases[-1]] == [(60,), (64,), (67,), (60, 64, 67)]
    assert [ev.steps for ev in gen.followed_phrases[-1]][:3] == [4, 2, 2]  # the gaps between onsets
    assert len(out) == 10 and all(ev in SCRIPT for ev in out)  # what the fake plays, after the last chord
    assert "next_event" not in vars(gen) and "prime" not in vars(gen)  # the generator is itself again


def test_follow_table_live_measures_the_continue_stream_and_refuses_an_unfollowing_source(tiny_onnx):
    engine = Engine(tiny_onnx[0], provider="cpu")
    tune = parse_seed_notes("C4:.5 D4:.5 E4:.5 G4:.5 " * 14, engine.codec.grid.steps_per_beat)
    pieces = {"tunes": [tune, tune[4:] + tune[:4]]}
    served = {"served": (None, Decoding(loop_guard=32))}
    table = follow_table(engine, pieces, seeds=2, answer_len=24, sources=served, live=True)
    row = table["tunes"]["served"]
    assert row["seeds"] == 2 and row["texture"] is not None and 0 <= row["pitch_loop_8"] <= 1
    with pytest.raises(ValueError, match="follows the seed"):
        follow_table(engine, pieces, seeds=1, sources={"model": (Steering(), Decoding())}, live=True)
