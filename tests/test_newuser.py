"""`python -m midiseed.bench.newuser`: the five style seeds are real, musically what they claim, and
every one is answered through the real `midiseed generate` and measured against its seed."""

import json
import subprocess
import sys

import mido
import numpy as np
import pytest

from midiseed.bench import newuser
from midiseed.runtime.codec import Event, Grid
from midiseed.runtime.midifile import read_notes

GRID = Grid()
# the texture each seed is written in, and the key a musician hears in it (the blues lick is A minor
# pentatonic with its blue note: A minor is the right Krumhansl-Schmuckler answer)
NOTES_PER_ONSET = {"folk_tune": 1, "pop_riff": 1, "chorale_phrase": 4, "blues_lick": 1}
KEYS = {
    "folk_tune": "D major",
    "pop_riff": "A minor",
    "chord_progression": "C major",
    "chorale_phrase": "G major",
    "blues_lick": "A minor",
}
# median gap between onsets, in beats: running eighths, chords on half notes, chorale quarters
MEDIAN_IOI = {"folk_tune": 0.5, "pop_riff": 0.5, "chord_progression": 2.0, "chorale_phrase": 1.0}


@pytest.fixture(scope="module")
def measured(tiny_onnx, tmp_path_factory):
    """(folder, JSON rows, printed table) of the tool run twice on the tiny model, as a user runs it."""
    out = tmp_path_factory.mktemp("newuser")
    cmd = [sys.executable, "-m", "midiseed.bench.newuser", "--model", str(tiny_onnx[0]), "--out", str(out)]
    as_json = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True)
    as_table = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return out, json.loads(as_json.stdout), as_table.stdout


def test_five_seeds_are_real_one_track_midi_files(measured):
    out, rows, _ = measured
    assert [r["seed"] for r in rows] == list(KEYS)
    for name in KEYS:
        mid = mido.MidiFile(out / f"{name}.mid")
        assert mid.ticks_per_beat == 480
        assert len(mid.tracks) == 1
        tempos = [m.tempo for m in mid.tracks[0] if m.type == "set_tempo"]
        assert len(tempos) == 1 and 60 <= mido.tempo2bpm(tempos[0]) <= 140
        assert sum(m.type == "note_on" and m.velocity > 0 for m in mid.tracks[0]) >= 12


def test_seeds_have_the_texture_note_rate_and_key_they_are_written_in(measured):
    _, rows, _ = measured
    by_name = {r["seed"]: r for r in rows}
    for name, count in NOTES_PER_ONSET.items():
        assert by_name[name]["seed_notes_per_onset"] == count, name
    assert by_name["chord_progression"]["seed_notes_per_onset"] >= 3
    for name, beats in MEDIAN_IOI.items():
        assert by_name[name]["seed_median_ioi_beats"] == beats, name
    assert {name: r["seed_key"] for name, r in by_name.items()} == KEYS
    # the blues lick has its blue note (Eb) and the pentatonic's minor third (C)
    pcs = set(read_notes(measured[0] / "blues_lick.mid")[:, 0] % 12)
    assert {9, 0, 2, 3, 4, 7} <= pcs


def test_every_seed_is_answered_through_generate_and_the_answer_keeps_the_seed(measured):
    out, rows, _ = measured
    for r in rows:
        seed = read_notes(out / f"{r['seed']}.mid", GRID)
        whole = read_notes(out / f"{r['seed']}.answer.mid", GRID)
        seed_end = int(seed[:, 2].max())
        # generate writes seed + answer: the seed's onsets come first, unchanged
        head = whole[whole[:, 1] < seed_end]
        np.testing.assert_array_equal(head[:, :2], seed[:, :2])
        assert r["answer_events"] >= 1
        assert int(whole[:, 2].max()) > seed_end


def test_ratios_are_factors_and_verdicts_follow_the_goals(measured):
    _, rows, _ = measured
    for r in rows:
        for key in ("texture", "rhythm"):
            assert r[key] is None or r[key] >= 1.0
        assert r["in_key"] is None or 0.0 <= r["in_key"] <= 1.0
        assert (r["answer_pitches"] >= 1) == (r["answer_notes_per_onset"] is not None)
        keeps = (
            r["texture"] is not None
            and r["texture"] <= newuser.TEXTURE_GOAL
            and r["rhythm"] is not None
            and r["rhythm"] <= newuser.RHYTHM_GOAL
            and r["in_key"] is not None
            and r["in_key"] >= newuser.IN_KEY_GOAL
            and r["answer_pitches"] >= min(r["seed_pitches"], newuser.VARIETY_GOAL)
        )
        assert (r["verdict"] == "keeps") == keeps, r
        assert keeps or r["verdict"].startswith("fails ")


def test_table_has_one_row_per_seed_with_its_verdict(measured):
    _, rows, table = measured
    body = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(body) == 5
    for line, r in zip(body, rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 11
        assert cells[0] == r["seed"] and cells[7] == r["seed_key"] and cells[10] == r["verdict"]
        assert cells[9] == f"{r['seed_pitches']} → {r['answer_pitches']}"


def test_answer_part_cuts_an_event_that_straddles_the_seed_end():
    whole = [Event((60,), (False,), 4), Event((62, 65), (False, False), 6), Event((), (), 2)]
    answer = newuser.answer_part(whole, 7)
    assert answer == [Event((62, 65), (True, True), 3), Event((), (), 2)]
    assert newuser.answer_part(whole, 4) == whole[1:]


def test_live_plays_each_seed_into_continue_mode_and_measures_what_it_streams(tiny_onnx, capsys):
    """--live: the seeds played note by note into the daemon's Performer in continue mode; the same
    seed figures as the files give, and the first 64 events streamed after the last note."""
    assert newuser.main(["--model", str(tiny_onnx[0]), "--live", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in rows] == list(KEYS)
    by_name = {r["seed"]: r for r in rows}
    for name, beats in MEDIAN_IOI.items():
        assert by_name[name]["seed_median_ioi_beats"] == beats, name
        assert str(by_name[name]["seed_key"]) == KEYS[name]
    for r in rows:
        assert r["answer_events"] == 64 and r["verdict"].startswith(("keeps", "fails"))
    live = newuser.play_live(str(tiny_onnx[0]), newuser.parse_seed_notes("C4+E4+G4:2 F4+A4+C5:2", 4), 120)
    assert len(live) == 64 and any(ev.pitches for ev in live)
    with pytest.raises(SystemExit) as refused:  # nothing is written, and generate is not run
        newuser.main(["--live", "--generate=--pitch-guard"])
    assert refused.value.code == 2
