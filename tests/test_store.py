"""The token store: `midiseed data tokenize` on tiny real folders, read back through TokenStore."""

import fcntl
import json
import os
import re
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest
from typer.testing import CliRunner

from midiseed.bench.lakh import LONG_NOTE_TICKS, lakh_like
from midiseed.cli import app
from midiseed.runtime.codec import Codec, Grid, notes_to_events
from midiseed.runtime.midifile import read_notes, write_notes
from midiseed.training import tokenize as tokenize_module
from midiseed.training.corpus import DataError
from midiseed.training.store import LOCK_FILE, STORE_FILE, TokenStore, is_store, store_for, tokenize
from midiseed.training.tokenize import Limits, bound_notes

TEST_FILES = Path(__file__).resolve().parents[1].parent / "shared" / "test-midi-files" / "midi"
BROKEN = {  # the files no parser reads (see test_corpus.py): skipped, each with a reason
    "test-corrupt-file-missing-byte.mid",
    "test-empty-file.mid",
    "test-illegal-message-all.mid",
    "test-not-a-midi-file.mid",
}


def scale(offset: int = 0) -> np.ndarray:
    return np.array([[60 + offset + k, 2 * k, 2 * k + 3] for k in range(8)])


def make_folder(root: Path) -> Path:
    """a/one.mid, a/two.mid, b/deep/three.mid (Lakh-like, several tracks), top.mid."""
    (root / "a").mkdir(parents=True)
    (root / "b" / "deep").mkdir(parents=True)
    write_notes(scale(), root / "a" / "one.mid")
    write_notes(scale(5), root / "a" / "two.mid")
    (root / "b" / "deep" / "three.mid").write_bytes(lakh_like(0, 1))
    write_notes(scale(-7), root / "top.mid")
    return root


def encoded(path: Path, codec: Codec) -> list[int]:
    return codec.encode(notes_to_events(read_notes(path, codec.grid), codec.grid)).tolist()


def assert_reads_back(store: TokenStore, data: Path) -> None:
    """Every stored file's tokens equal the codec's encoding of the MIDI file it came from."""
    for f in store.files:
        assert store.tokens_of(f).tolist() == encoded(data / f.path, store.codec)


def test_tokens_read_back_equal_the_codecs_encoding_of_each_file(tmp_path):
    data = make_folder(tmp_path / "midi")
    report = tokenize(data, tmp_path / "store", workers=2)
    store = TokenStore.open(tmp_path / "store")
    assert is_store(tmp_path / "store") and report.files == 4 and report.tokenised == 4
    assert [f.path for f in store.files] == ["a/one.mid", "a/two.mid", "b/deep/three.mid", "top.mid"]
    assert [f.collection for f in store.files] == ["a", "a", "b", ""]
    for f in store.files:
        ids = store.tokens_of(f)
        assert ids.dtype == np.dtype("<u2") and not ids.flags.writeable
        assert ids.tolist() == encoded(data / f.path, store.codec)
    assert store.total_tokens == report.tokens > 4000  # the Lakh-like file has thousands
    assert store.codec.grid == Grid() and store.include_drums is False
    assert not store.skipped and not store.cuts
    raw = np.fromfile(tmp_path / "store" / "shard-000000.u2", dtype="<u2")  # plain uint16 on disk
    assert raw.size == report.tokens


def test_incremental_run_reads_only_new_and_changed_files_and_drops_removed_ones(tmp_path):
    data = make_folder(tmp_path / "midi")
    out = tmp_path / "store"
    tokenize(data, out, workers=1)
    before = {f.path: f for f in TokenStore.open(out).files}

    write_notes(scale(2), data / "a" / "two.mid")  # changed content
    os.utime(data / "a" / "one.mid", ns=(1, 1))  # touched, same content: the hash says unchanged
    (data / "top.mid").unlink()  # removed
    write_notes(scale(9), data / "b" / "new.mid")  # new
    report = tokenize(data, out, workers=1)

    assert report.incremental
    assert (report.files, report.tokenised, report.reused, report.removed) == (4, 2, 2, 1)
    store = TokenStore.open(out)
    after = {f.path: f for f in store.files}
    assert set(after) == {"a/one.mid", "a/two.mid", "b/deep/three.mid", "b/new.mid"}
    # unchanged files keep their tokens where they were; the changed one is in a new shard
    for path in ("a/one.mid", "b/deep/three.mid"):
        assert store.shard_ids[after[path].shard] == 0
        assert (after[path].offset, after[path].tokens) == (before[path].offset, before[path].tokens)
    assert store.shard_ids[after["a/two.mid"].shard] == 1
    assert_reads_back(store, data)
    assert report.dead_tokens == before["a/two.mid"].tokens + before["top.mid"].tokens

    again = tokenize(data, out, workers=1)  # nothing changed: nothing read
    assert (again.tokenised, again.reused, again.removed) == (0, 4, 0)


def test_a_shard_that_is_mostly_dead_is_copied_out_and_deleted(tmp_path):
    data = make_folder(tmp_path / "midi")
    out = tmp_path / "store"
    tokenize(data, out, workers=1)
    (data / "b" / "deep" / "three.mid").unlink()  # most of shard 0's tokens
    report = tokenize(data, out, workers=1)
    store = TokenStore.open(out)
    assert report.compacted == 1 and report.dead_tokens == 0
    assert store.shard_ids == [1] and not (out / "shard-000000.u2").exists()
    assert_reads_back(store, data)


def test_a_changed_file_in_a_compacted_shard_keeps_its_new_tokens(tmp_path):
    data = make_folder(tmp_path / "midi")
    out = tmp_path / "store"
    tokenize(data, out, workers=1)
    (data / "b" / "deep" / "three.mid").write_bytes(lakh_like(0, 2))  # most of shard 0, changed
    report = tokenize(data, out, workers=1)
    store = TokenStore.open(out)
    assert report.compacted == 1 and report.tokenised == 1
    assert store.shard_ids == [1] and not (out / "shard-000000.u2").exists()  # copies join the new shard
    assert_reads_back(store, data)


def test_a_run_killed_midway_leaves_a_store_that_opens_and_the_next_run_completes(tmp_path, monkeypatch):
    data = tmp_path / "midi"
    data.mkdir()
    for k in range(12):
        write_notes(scale(k % 20), data / f"f{k:02d}.mid")
    monkeypatch.setattr(tokenize_module, "SHARD_TOKENS", 40)  # a shard per file or two
    monkeypatch.setattr(tokenize_module, "CHECKPOINT_S", 0.0)  # checkpoint at every shard
    real_record, calls = tokenize_module._record, []

    def dying_record(*args):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt  # as if the run were killed here
        return real_record(*args)

    monkeypatch.setattr(tokenize_module, "_record", dying_record)
    with pytest.raises(KeyboardInterrupt):
        tokenize(data, tmp_path / "store", workers=1)
    partial = TokenStore.open(tmp_path / "store")
    assert 0 < len(partial.files) < 12
    for f in partial.files:
        assert partial.tokens_of(f).tolist() == encoded(data / f.path, partial.codec)

    monkeypatch.setattr(tokenize_module, "_record", real_record)
    report = tokenize(data, tmp_path / "store", workers=1)
    assert report.tokenised == 12 - len(partial.files)
    assert len(TokenStore.open(tmp_path / "store").files) == 12


def test_a_rerun_checkpointing_while_a_touched_file_is_pending_keeps_its_old_shard(tmp_path, monkeypatch):
    data = tmp_path / "midi"
    data.mkdir()
    write_notes(scale(), data / "z_touched.mid")
    write_notes(scale(3), data / "z_changed.mid")
    out = tmp_path / "store"
    tokenize(data, out, workers=1)
    os.utime(data / "z_touched.mid", ns=(1, 1))  # same content: its tokens stay in shard 0
    write_notes(scale(4), data / "z_changed.mid")  # new content: re-tokenised, read after the new files
    write_notes(scale(1), data / "a1.mid")
    write_notes(scale(2), data / "a2.mid")
    # a shard per file and a checkpoint at every shard: one runs while the z_ files are still pending
    monkeypatch.setattr(tokenize_module, "SHARD_TOKENS", 5)
    monkeypatch.setattr(tokenize_module, "CHECKPOINT_S", -1.0)
    report = tokenize(data, out, workers=1)
    assert (report.tokenised, report.reused) == (3, 1)
    store = TokenStore.open(out)
    assert [f.path for f in store.files] == ["a1.mid", "a2.mid", "z_changed.mid", "z_touched.mid"]
    assert store.shard_ids[store.files[-1].shard] == 0
    for f in store.files:
        assert (out / f"shard-{store.shard_ids[f.shard]:06d}.u2").is_file()
        assert store.tokens_of(f).tolist() == encoded(data / f.path, store.codec)


def test_a_first_run_killed_before_its_first_checkpoint_is_resumed(tmp_path, monkeypatch):
    data = make_folder(tmp_path / "midi")
    out = tmp_path / "store"
    real_record = tokenize_module._record

    def dying_record(*args):
        real_record(*args)  # the first file's tokens go into the open shard
        raise KeyboardInterrupt  # as if the run were killed here, long before CHECKPOINT_S

    monkeypatch.setattr(tokenize_module, "_record", dying_record)
    with pytest.raises(KeyboardInterrupt):
        tokenize(data, out, workers=1)
    assert (out / "shard-000000.u2").is_file()
    assert TokenStore.open(out).files == []  # an empty store, not a folder every later run refuses
    monkeypatch.setattr(tokenize_module, "_record", real_record)
    report = tokenize(data, out, workers=1)
    assert report.tokenised == 4 and len(TokenStore.open(out).files) == 4

    # what a midiseed without the empty first checkpoint left: a shard and nothing else
    old = tmp_path / "old"
    old.mkdir()
    (old / "shard-000000.u2").write_bytes(b"\0\0" * 10)
    assert tokenize(data, old, workers=1).tokenised == 4
    store = TokenStore.open(old)
    assert store.shard_ids == [1] and not (old / "shard-000000.u2").exists()
    assert_reads_back(store, data)


def test_a_second_run_into_a_store_being_written_is_refused(tmp_path):
    data = make_folder(tmp_path / "midi")
    out = tmp_path / "store"
    tokenize(data, out, workers=1)
    with open(out / LOCK_FILE, "w") as held:  # as a run still tokenising into it would
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(DataError) as refused:
            tokenize(data, out, workers=1)
        assert str(refused.value) == (
            f"another midiseed is tokenising into {out}; wait for it or use another --out"
        )
        result = CliRunner().invoke(app, ["data", "tokenize", str(data), "--out", str(out)])
        assert result.exit_code == 2 and "another midiseed is tokenising" in result.stderr
    assert tokenize(data, out, workers=1).reused == 4  # released: the next run goes ahead


def extreme_file(path: Path, note_ticks: int, bars: int = 0, tpb: int = 480) -> None:
    """One long note of `note_ticks`, then (with `bars`) a quarter note in each of `bars` bars."""
    track = mido.MidiTrack()
    track.append(mido.Message("note_on", note=40, velocity=80, time=0))
    track.append(mido.Message("note_off", note=40, velocity=0, time=note_ticks))
    for _ in range(bars):
        track.append(mido.Message("note_on", note=60, velocity=80, time=0))
        track.append(mido.Message("note_off", note=60, velocity=0, time=tpb))
        track.append(mido.Message("note_on", note=64, velocity=0, time=3 * tpb))  # a silent tick filler
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    mid.tracks.append(track)
    mid.save(str(path))


def test_extreme_durations_are_cut_to_the_limits_with_their_reasons(tmp_path):
    data = tmp_path / "midi"
    data.mkdir()
    extreme_file(data / "long-note.mid", LONG_NOTE_TICKS)  # 558,333 beats
    extreme_file(data / "ten-thousand-bars.mid", 480, bars=10_000)
    limits = Limits(max_note_beats=64, max_beats=4096, max_tokens=1000, timeout_s=20)
    report = tokenize(data, tmp_path / "store", workers=1, limits=limits)
    store = TokenStore.open(tmp_path / "store")
    assert report.cut == 2 and not store.skipped
    assert store.cuts["long-note.mid"] == ["1 notes longer than 64 beats (up to 558333): shortened to 64"]
    assert store.cuts["ten-thousand-bars.mid"] == [
        "the piece lasts 39998 beats: cut after 4096 beats",
        "3073 tokens: kept the first 1000 (whole events, at most 1000)",
    ]
    sizes = {f.path: f.tokens for f in store.files}
    assert sizes["long-note.mid"] == 64 * 4 // 16 * 2  # 64 beats = 16 events of D16, N/H40 + D
    assert sizes["ten-thousand-bars.mid"] <= 1000
    assert all(t >= 1 for t in sizes.values())


def test_bound_notes_cuts_too_many_notes_and_says_so():
    notes = np.array([[60, k, k + 1] for k in range(100)])
    kept, cuts = bound_notes(notes, Grid(), Limits(max_notes=30))
    assert len(kept) == 30 and cuts == ["100 notes: kept the first 30"]
    same, none = bound_notes(notes, Grid(), Limits())
    assert none == [] and len(same) == 100


def test_every_odd_test_file_is_stored_or_skipped_with_a_reason(tmp_path):
    report = tokenize(TEST_FILES, tmp_path / "store", workers=2)
    store = TokenStore.open(tmp_path / "store")
    stored = {f.path for f in store.files}
    assert report.files == 72 and len(stored) + len(store.skipped) == 72
    assert set(store.skipped) >= BROKEN and all(store.skipped.values())
    assert "test-c-major-scale.mid" in stored
    assert all(f.tokens >= 1 and len(f.sha1) == 40 for f in store.files)


def test_tokenize_refuses_a_folder_that_is_not_a_store_and_not_empty(tmp_path):
    data = make_folder(tmp_path / "midi")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a token store and not empty"):
        tokenize(data, tmp_path / "busy")
    with pytest.raises(DataError, match="does not exist"):
        tokenize(tmp_path / "nope", tmp_path / "store")


def test_open_refuses_what_is_not_a_store_or_another_format(tmp_path):
    with pytest.raises(DataError, match="not a token store"):
        TokenStore.open(tmp_path)
    (tmp_path / STORE_FILE).write_text(json.dumps({"format": 99}))
    with pytest.raises(DataError, match="format 99"):
        TokenStore.open(tmp_path)


def test_store_for_is_per_folder_under_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a, b = store_for(tmp_path / "a"), store_for(tmp_path / "b")
    assert a != b and a.parent == tmp_path / "cache" / "midiseed" / "stores"


def test_cli_tokenize_prints_a_summary_and_exits_2_on_a_missing_folder(tmp_path):
    data = make_folder(tmp_path / "midi")
    shutil.copy(TEST_FILES / "test-not-a-midi-file.mid", data / "a")
    runner = CliRunner()
    result = runner.invoke(
        app, ["data", "tokenize", str(data), "--out", str(tmp_path / "s"), "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("tokenized 5 files (5 read, 0 unchanged, 0 removed): ")
    assert " 1 skipped, 0 cut, " in line and "files/s" in line
    missing = runner.invoke(app, ["data", "tokenize", str(tmp_path / "nope"), "--out", str(tmp_path / "s")])
    assert missing.exit_code == 2
    assert missing.stderr.strip() == f"error: data folder {tmp_path / 'nope'} does not exist"


def test_an_empty_or_another_folder_never_empties_an_existing_store(tmp_path):
    data = make_folder(tmp_path / "midi")
    tokenize(data, tmp_path / "store", workers=1)
    before = {p.name: p.read_bytes() for p in (tmp_path / "store").iterdir()}
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no music here")
    with pytest.raises(DataError, match=re.escape("empty has no .mid, .midi or .kar files: nothing to")):
        tokenize(tmp_path / "empty", tmp_path / "store")
    other = tmp_path / "other"
    other.mkdir()
    write_notes(scale(), other / "elsewhere.mid")
    with pytest.raises(
        DataError,
        match=re.escape(f"store of {data.resolve()}; updating it from {other} would drop 4 of its 4 files"),
    ):
        tokenize(other, tmp_path / "store")
    assert {p.name: p.read_bytes() for p in (tmp_path / "store").iterdir()} == before
    assert len(TokenStore.open(tmp_path / "store").files) == 4
    assert tokenize(data, tmp_path / "store").reused == 4  # its own folder still updates it
    moved = data.rename(tmp_path / "moved")  # the same files elsewhere: it follows them, reading nothing
    assert tokenize(moved, tmp_path / "store").reused == 4
    assert tokenize(moved, tmp_path / "store").reused == 4


def test_a_store_whose_shard_was_cut_short_is_refused_at_open_in_one_line(tmp_path):
    tokenize(make_folder(tmp_path / "midi"), tmp_path / "store", workers=1)
    shard = tmp_path / "store" / "shard-000000.u2"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"store .* is damaged: shard-000000.u2 holds 500 tokens where"):
        TokenStore.open(tmp_path / "store")
    shard.unlink()
    with pytest.raises(DataError, match=re.escape("is damaged: shard-000000.u2 No such file")):
        TokenStore.open(tmp_path / "store")


def test_cli_tokenize_lists_each_skipped_file_with_its_reason(tmp_path):
    data = make_folder(tmp_path / "midi")
    shutil.copy(TEST_FILES / "test-not-a-midi-file.mid", data / "a")
    result = CliRunner().invoke(
        app, ["data", "tokenize", str(data), "--out", str(tmp_path / "s"), "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    reason = TokenStore.open(tmp_path / "s").skipped["a/test-not-a-midi-file.mid"]
    assert f"skipped a/test-not-a-midi-file.mid: {reason}" in result.stderr.splitlines()
