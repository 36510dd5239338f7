"""`midiseed data music21`: real exports from music21's bundled corpus (small collections, seconds)."""

import json
from pathlib import Path

import mido
import pytest
from typer.testing import CliRunner

from midiseed.cli import app
from midiseed.training.music21_export import FAILED_NAME, collections, export_music21, plan

runner = CliRunner()


def test_collections_are_the_top_folders_of_music21s_corpus():
    found = collections()
    assert {"bach", "palestrina", "essenFolksong", "ryansMammoth", "nottingham-dataset"} <= set(found)
    assert found["palestrina"] > 1000


def test_an_abc_file_of_several_tunes_gives_one_midi_file_a_tune_in_its_collections_folder(tmp_path):
    result = runner.invoke(
        app, ["data", "music21", "--out", str(tmp_path), "--collection", "nottingham-dataset"]
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.mid"))
    assert written == ["nottingham-dataset/reelsa-c-80.mid", "nottingham-dataset/reelsa-c-81.mid"]
    for p in tmp_path.rglob("*.mid"):
        notes = [m for m in mido.MidiFile(p) if m.type == "note_on" and m.velocity]
        assert len(notes) > 20  # a whole tune, not a header
    assert "wrote 2 MIDI files" in result.output


def test_a_rerun_skips_what_exists(tmp_path):
    runner.invoke(app, ["data", "music21", "--out", str(tmp_path), "--collection", "nottingham-dataset"])
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.mid")}
    result = runner.invoke(
        app, ["data", "music21", "--out", str(tmp_path), "--collection", "nottingham-dataset"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 0 MIDI files" in result.output and "2 there" in result.output
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.mid")} == mtimes


def test_a_piece_over_the_time_limit_is_skipped_recorded_and_retried_only_under_a_longer_limit(tmp_path):
    report = export_music21(tmp_path, None, names=["nottingham-dataset"], workers=1, piece_seconds=1e-4)
    assert report.written == 0 and report.failed
    assert all("took over" in why for why in report.failed.values())
    recorded = json.loads((tmp_path / FAILED_NAME).read_text())
    assert recorded == report.failed
    again = export_music21(tmp_path, None, names=["nottingham-dataset"], workers=1, piece_seconds=1e-4)
    assert again.written == 0 and not again.failed and again.existing == 2
    assert not list(tmp_path.rglob("*.mid"))
    longer = export_music21(tmp_path, None, names=["nottingham-dataset"], workers=1)
    assert longer.written == 2 and not longer.failed


def test_limit_caps_pieces_per_collection_and_one_works_voices_make_one_piece(tmp_path):
    report = export_music21(tmp_path, None, names=["nottingham-dataset", "josquin"], limit=1, workers=1)
    assert report.written == 2
    assert sorted(p.parent.name for p in tmp_path.rglob("*.mid")) == ["josquin", "nottingham-dataset"]
    # josquin's ABC files give each voice an X: of its own, under one title: one piece, voices as tracks
    (josquin,) = (tmp_path / "josquin").glob("*.mid")
    assert josquin.name == "4vPerIlludAveProlatum.mid"
    voiced = [t for t in mido.MidiFile(josquin).tracks if any(m.type == "note_on" for m in t)]
    assert len(voiced) == 2


def test_an_unknown_collection_is_exit_2_with_one_line_naming_the_real_ones(tmp_path):
    result = runner.invoke(app, ["data", "music21", "--out", str(tmp_path), "--collection", "beatles"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "'beatles'" in lines[0] and "palestrina" in lines[0] and "essenFolksong" in lines[0]


def test_tunes_that_share_a_title_outside_josquin_stay_tunes_of_their_own():
    jobs, _ = plan(["essenFolksong", "josquin"])
    by_stem = {j.stem: j for j in jobs}
    ballad = by_stem["essenFolksong/ballad80"]  # 93 variants of one ballad, all under one title
    assert len(ballad.refs) == 93 and not ballad.voices
    assert by_stem["josquin/milleRegrets"].voices and not by_stem["josquin/milleRegrets"].refs


def test_a_folder_that_cannot_be_written_stops_the_export_and_blames_no_piece(tmp_path):
    (tmp_path / "nottingham-dataset").write_text("a file where the collection's folder should be")
    result = runner.invoke(
        app, ["data", "music21", "--out", str(tmp_path), "--collection", "nottingham-dataset"]
    )
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1].startswith("error: cannot write ")
    failed = tmp_path / "music21_failed.json"
    assert not failed.exists() or "nottingham" not in failed.read_text()


def test_out_that_is_a_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "afile").write_text("mine")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        result = runner.invoke(
            app, ["data", "music21", "--out", str(out), "--collection", "nottingham-dataset"]
        )
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == f"error: --out {out}: {tmp_path / 'afile'} is a file, not a folder"
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_piece_shipped_in_two_formats_is_read_from_one_and_flat_names_never_collide():
    jobs, _ = plan(["bach", "beethoven"])
    stems = [j.stem for j in jobs]
    assert len(stems) == len(
        set(stems)
    )  # bwv277, bwv281, bwv366 and beethoven's opus18no1 come as .krn and .mxl
    assert next(j.src for j in jobs if j.stem == "bach/bwv277").endswith("bwv277.mxl")
    flat, _ = plan(None, composer="beethoven")
    names = [j.stem for j in flat]
    assert len(names) == len(set(names))  # each opus has a movement1: flat, they used to overwrite each other
    assert "opus18no1-movement1" in names


def test_a_piece_music21_cannot_write_leaves_no_part_file(tmp_path, monkeypatch):
    from midiseed.training import music21_export

    class Unwritable:
        def write(self, fmt, fp):
            Path(fp).write_bytes(b"MThd")  # half a file, then music21 gives up
            raise ValueError("cannot write this score")

    monkeypatch.setattr(music21_export, "_dedupe_context", lambda score: None)
    with pytest.raises(ValueError, match="cannot write this score"):
        music21_export._write(Unwritable(), tmp_path / "x.mid")
    assert list(tmp_path.iterdir()) == []
