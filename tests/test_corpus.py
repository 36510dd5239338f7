import os
import shutil
import time
from pathlib import Path

import mido
import numpy as np
import pytest

from midiseed.runtime.codec import Grid, events_to_notes, notes_to_events
from midiseed.runtime.midifile import MidiReadError, read_notes, write_notes
from midiseed.training.corpus import (
    TRANSIENT,
    DataError,
    _parse_all,
    _read_isolated,
    _read_one,
    find_midi_files,
    load_corpus,
    split_by_file,
)

TEST_FILES = Path(__file__).resolve().parents[1].parent / "shared" / "test-midi-files" / "midi"
# the ten files mido refuses (shared/test-midi-files/README.md); symusic reads two of them
BROKEN = {
    "test-corrupt-file-missing-byte.mid",
    "test-empty-file.mid",
    "test-illegal-message-all.mid",
    "test-illegal-message-f4.mid",
    "test-illegal-message-f5.mid",
    "test-illegal-message-f9.mid",
    "test-illegal-message-fd.mid",
    "test-not-a-midi-file.mid",
}


def test_shared_test_files_are_there():
    assert len(list(TEST_FILES.glob("*.mid"))) == 72


def test_every_odd_test_file_is_read_or_skipped_with_a_reason(tmp_path):
    reports = []
    corpus = load_corpus(
        TEST_FILES, cache_dir=tmp_path / "cache", workers=2, on_skip=lambda f, r: reports.append(f)
    )
    assert set(corpus.skipped) >= BROKEN
    assert all(corpus.skipped[name] for name in BROKEN)  # each has a reason
    assert set(reports) == set(corpus.skipped)
    assert len(corpus.files) + len(corpus.skipped) == 72
    assert "test-c-major-scale.mid" in corpus.files
    assert corpus.summary()["files_read"] == len(corpus.files)


def test_unreadable_file_raises_with_reason():
    with pytest.raises(MidiReadError, match="MThd"):
        read_notes(TEST_FILES / "test-not-a-midi-file.mid")


def test_drums_are_dropped_unless_asked():
    path = TEST_FILES / "test-all-gm-percussion.mid"
    assert len(read_notes(path)) == 0
    assert len(read_notes(path, include_drums=True)) > 40


def test_c_major_scale_reads_as_eight_notes_on_the_grid():
    notes = read_notes(TEST_FILES / "test-c-major-scale.mid")
    assert notes[:, 0].tolist() == [60, 62, 64, 65, 67, 69, 71, 72]
    assert (np.diff(notes[:, 1]) > 0).all()


def test_type_2_file_plays_tracks_one_after_another():
    type1 = read_notes(TEST_FILES / "test-2-tracks-type-1.mid")
    type2 = read_notes(TEST_FILES / "test-2-tracks-type-2.mid")
    assert len(type1) == len(type2)
    assert type2[:, 2].max() > type1[:, 2].max()


def test_written_file_reads_back_the_same_notes_with_tempo_changes_ignored(tmp_path):
    notes = np.array([[60, 0, 4], [64, 0, 2], [67, 2, 3], [72, 6, 8]])
    path = tmp_path / "x.mid"
    write_notes(notes, path, bpm=97)
    np.testing.assert_array_equal(read_notes(path), notes)
    mid = mido.MidiFile(path)  # a tempo change in the middle moves seconds, not beats
    mid.tracks[0].insert(3, mido.MetaMessage("set_tempo", tempo=300000, time=0))
    mid.save(path)
    np.testing.assert_array_equal(read_notes(path), notes)
    assert events_to_notes(notes_to_events(read_notes(path))).tolist() == notes.tolist()


def test_folder_is_searched_recursively_and_cache_avoids_reparsing(tmp_path):
    data = tmp_path / "data"
    (data / "a" / "b").mkdir(parents=True)
    for name in ["test-c-major-scale.mid", "test-multichannel-chords-0.mid", "test-empty-file.mid"]:
        shutil.copy(TEST_FILES / name, data / "a" / "b" / name)
    shutil.copy(TEST_FILES / "test-vlq-2-byte.mid", data / "top.MIDI")
    assert len(find_midi_files(data)) == 4
    first = load_corpus(data, cache_dir=tmp_path / "c")
    assert first.parsed == 4
    second = load_corpus(data, cache_dir=tmp_path / "c")
    assert second.parsed == 0
    assert second.files == first.files and second.skipped == first.skipped
    for a, b in zip(first.notes, second.notes):
        np.testing.assert_array_equal(a, b)
    shutil.copy(TEST_FILES / "test-multichannel-chords-1.mid", data / "new.mid")
    third = load_corpus(data, cache_dir=tmp_path / "c")
    assert third.parsed == 1 and len(third.files) == len(first.files) + 1
    other_grid = load_corpus(data, grid=Grid(steps_per_beat=8), cache_dir=tmp_path / "c")
    assert other_grid.parsed == 5


def test_missing_and_empty_folders_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_corpus(tmp_path / "nope")
    with pytest.raises(DataError, match=r"no \.mid"):
        load_corpus(tmp_path)


def test_held_out_split_is_by_file_stable_and_never_empty():
    files = [f"piece{i}.mid" for i in range(50)]
    train, val = split_by_file(files, 0.1)
    assert 1 <= len(val) <= 12 and not set(train) & set(val) and len(train) + len(val) == 50
    held = {files[i] for i in val}
    more = [*files, *(f"extra{i}.mid" for i in range(30))]
    _, val_more = split_by_file(more, 0.1)
    # adding files never moves an old file from held-out into training
    assert {more[i] for i in val_more} & set(files) == held
    assert split_by_file(["a.mid", "b.mid"], 0.1)[1] != []


def _misbehave(job) -> None:
    """A file named *hang* never finishes and one named *crash* kills its worker process."""
    name = Path(job[0]).name
    if "hang" in name:
        time.sleep(3600)
    if "crash" in name:
        os._exit(3)


def _stubborn_reader(job):
    """`_read_one`, but misbehaving (`_misbehave`; module-level, so spawned workers import it by name)."""
    _misbehave(job)
    return _read_one(job)


def _folder_with(tmp_path, odd: list[str], normal: int = 14) -> list[str]:
    for i in range(normal):
        shutil.copy(TEST_FILES / "test-c-major-scale.mid", tmp_path / f"ok{i:02d}.mid")
    for name in odd:
        shutil.copy(TEST_FILES / "test-c-major-scale.mid", tmp_path / name)
    return [str(p) for p in find_midi_files(tmp_path)]


def test_a_file_that_hangs_the_parser_costs_that_file_only_and_is_not_cached(tmp_path):
    paths = _folder_with(tmp_path, ["hang.mid"])
    start = time.monotonic()
    got = dict(_parse_all(paths, tmp_path, Grid(), False, 2, file_timeout=3, read=_stubborn_reader))
    assert time.monotonic() - start < 60  # the time limit, a fresh pool, never the hour
    assert set(got) == {Path(p).name for p in paths}
    notes, reason = got["hang.mid"]
    assert notes is None and reason == "parsing took longer than 3 s"
    assert reason.startswith(TRANSIENT)  # so the cache never keeps it
    assert all(got[f"ok{i:02d}.mid"][0] is not None and len(got[f"ok{i:02d}.mid"][0]) == 8 for i in range(14))


def test_a_worker_that_dies_costs_only_its_file(tmp_path):
    paths = _folder_with(tmp_path, ["crash.mid"])
    got = dict(_parse_all(paths, tmp_path, Grid(), False, 2, file_timeout=20, read=_stubborn_reader))
    assert set(got) == {Path(p).name for p in paths}
    assert got["crash.mid"] == (None, "the parser crashed on this file")
    assert all(got[f"ok{i:02d}.mid"][0] is not None for i in range(14))


def test_isolated_read_has_the_time_limit(tmp_path):
    shutil.copy(TEST_FILES / "test-c-major-scale.mid", tmp_path / "hang.mid")
    job = (str(tmp_path / "hang.mid"), Grid(), False)
    start = time.monotonic()
    assert _read_isolated(job, 2, _stubborn_reader) == (None, "parsing took longer than 2 s")
    assert time.monotonic() - start < 30
    notes, reason = _read_isolated((str(TEST_FILES / "test-c-major-scale.mid"), Grid(), False), 2)
    assert reason == "" and len(notes) == 8


def test_load_corpus_takes_a_file_timeout(tmp_path):
    (tmp_path / "d").mkdir()
    _folder_with(tmp_path / "d", [], normal=10)
    corpus = load_corpus(tmp_path / "d", workers=2, use_cache=False, file_timeout=10)
    assert len(corpus.files) == 10 and not corpus.skipped


def _stubborn_tokenizer(job):
    """`tokenize_one`, but misbehaving (`_misbehave`)."""
    from midiseed.training.tokenize import tokenize_one

    _misbehave(job)
    return tokenize_one(job)


def test_tokenize_puts_the_whole_job_of_a_file_under_one_limit_and_retries_it_next_run(tmp_path, monkeypatch):
    from midiseed.training import tokenize as tokenize_module
    from midiseed.training.store import TokenStore, tokenize
    from midiseed.training.tokenize import Limits

    (tmp_path / "d").mkdir()
    _folder_with(tmp_path / "d", ["hang.mid", "crash.mid"], normal=10)
    monkeypatch.setattr(tokenize_module, "tokenize_one", _stubborn_tokenizer)
    start = time.monotonic()
    report = tokenize(tmp_path / "d", tmp_path / "s", workers=2, limits=Limits(timeout_s=3))
    assert time.monotonic() - start < 120  # the limit, never the hour
    store = TokenStore.open(tmp_path / "s")
    assert store.skipped == {
        "hang.mid": "parsing took longer than 3 s",
        "crash.mid": "the parser crashed on this file",
    }
    assert len(store.files) == 10 and report.skipped == 2
    monkeypatch.undo()  # the machine's fault, not the file's: the next run reads them again
    again = tokenize(tmp_path / "d", tmp_path / "s", workers=1)
    assert (again.tokenised, again.skipped) == (2, 0)
    assert len(TokenStore.open(tmp_path / "s").files) == 12


def test_read_notes_keeps_steps_inside_int32_for_absurd_tick_counts(tmp_path):
    track = mido.MidiTrack()
    track.append(mido.Message("note_on", note=60, velocity=80, time=0))
    track.append(mido.Message("note_off", note=60, velocity=0, time=0x0FFFFFFF))
    track.append(mido.Message("note_on", note=62, velocity=80, time=0x0FFFFFFF))
    track.append(mido.Message("note_off", note=62, velocity=0, time=0x0FFFFFFF))
    mid = mido.MidiFile(type=1, ticks_per_beat=1)  # one tick a beat: 4 steps a tick
    mid.tracks.append(track)
    mid.save(str(tmp_path / "far.mid"))
    notes = read_notes(tmp_path / "far.mid")
    assert notes.dtype == np.int32 and (notes >= 0).all()
    assert notes[:, 2].max() == np.iinfo(np.int32).max  # clipped, never wrapped negative


def _array_reader(job):
    """A numpy result per file (module-level, so spawned workers import it by name)."""
    return job[0], np.full(1000, 7, dtype=np.uint16), ""


def test_run_jobs_holds_no_results_it_has_handed_out(tmp_path):
    import gc
    import weakref

    from midiseed.training.corpus import run_jobs

    jobs = [(str(tmp_path / f"f{i:03d}.mid"), None) for i in range(80)]
    handed_out = []
    alive_after = []
    for _, (result, _) in run_jobs(jobs, tmp_path, 2, 30.0, _array_reader):
        handed_out.append(weakref.ref(result))
        del result
        gc.collect()
        alive_after.append(sum(ref() is not None for ref in handed_out))
    assert len(handed_out) == 80
    # with 176,581 files every result kept until the end is 4.7 GB of tokens: none may be kept
    assert max(alive_after) <= 1
