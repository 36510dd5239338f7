"""Training: the run directory, windows from the token store, the split, resuming, the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from midiseed.cli import app
from midiseed.runtime.codec import Codec, Event, Grid, notes_to_events
from midiseed.training.feed import TrainBatches, keras_train
from midiseed.training.rundir import RunDir, RunKeeper, RunState
from midiseed.training.split import Split, split_files
from midiseed.training.train import TrainOptions, train
from midiseed.training.windows import Pieces, Windows, permute, random_transpose, shift_range, transpose
from tests.conftest import make_piece

runner = CliRunner()


def test_tiny_run_leaves_a_complete_run_directory(tiny_run):
    for name in [
        "config.json",
        "codec.json",
        "split.json",
        "history.json",
        "history.png",
        "state.json",
        "model.keras",
        "metrics.json",
        "checkpoints/last.keras",
        "checkpoints/best.keras",
    ]:
        assert (tiny_run / name).is_file(), name
    history = json.loads((tiny_run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history[0])
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["train_tokens_per_second"] > 0
    assert metrics["held_out_loss"] == pytest.approx(min(h["val_loss"] for h in history), rel=1e-3)
    assert metrics["test_loss"] > 0 and 0 <= metrics["test_accuracy"] <= 1
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["model"]["lstm_units"] == [32, 32]
    codec = Codec.from_json((tiny_run / "codec.json").read_text())
    assert len(codec) == config["model"]["vocab_size"] == 128 + 128 + codec.grid.max_steps
    # the MIDI folder was tokenised into its cached store, which the run names
    assert (RunDir(config["data"]["store"]).root / "store.json").is_file()
    state = RunDir(tiny_run).read_state()
    assert state.tokens_trained == 2 * 45 * 16 * 32  # epochs x steps x windows x tokens


def test_split_is_by_file_three_way_and_stable(tiny_run):
    split = json.loads((tiny_run / "split.json").read_text())
    sides = [set(split[k]) for k in ("train", "validation", "test")]
    assert all(sides) and sum(map(len, sides)) == 10 and len(set.union(*sides)) == 10
    assert split["held_out"] == split["validation"]  # the key older readers know
    names = [f"song{i}.mid" for i in range(2000)]
    first = split_files(names, 0.1, 0.1)
    assert 150 < len(first.validation) < 250 and 150 < len(first.test) < 250
    more = split_files(names + [f"new/{i}.mid" for i in range(500)], 0.1, 0.1)
    for side in ("train", "validation", "test"):  # adding files moves no file across
        assert set(first.side(side)) == set(more.side(side)) & set(names)
    assert Split.from_json({"train": ["a"], "held_out": ["b"]}) == Split(["a"], ["b"], [])
    tiny = split_files(["a.mid", "b.mid", "c.mid"], 0.1, 0.1)
    assert len(tiny.train) == len(tiny.validation) == len(tiny.test) == 1


def test_on_the_fly_transposition_equals_transposing_the_events():
    codec = Codec(Grid())
    events = notes_to_events(make_piece(np.random.default_rng(1)), codec.grid)
    low = [Event((0, 40), (False, False), 2), Event((0,), (True,), 1)]  # pitch 0: only upward
    for piece in (events, low + events):
        ids = codec.encode(piece)
        down, up = shift_range(ids[None, :], -24, 24)
        for k in range(-24, 25):
            moved = [ev.transposed(k) for ev in piece]
            if any(ev is None for ev in moved):
                assert not down[0] <= k <= up[0]
                continue
            assert down[0] <= k <= up[0]
            np.testing.assert_array_equal(transpose(ids[None, :], np.array([k]))[0], codec.encode(moved))
    # random shifts stay in range, inside --transpose, one shift a window
    windows = np.stack([codec.encode(low + events)[:40], codec.encode(events)[:40]])
    shifted = random_transpose(np.repeat(windows, 200, axis=0), -5, 6, np.random.default_rng(0))
    k = shifted[:, 0] - np.repeat(windows, 200, axis=0)[:, 0]
    pitched = np.repeat(windows, 200, axis=0) < 256
    assert ((shifted - np.repeat(windows, 200, axis=0)) == np.where(pitched, k[:, None], 0)).all()
    assert set(k[:200]) == set(range(0, 7)) and set(k[200:]) == set(range(-5, 7))
    # a shifted pitch token stays a pitch token of its own kind (struck stays struck, held stays held)
    original = np.repeat(windows, 200, axis=0)
    assert (shifted[pitched] // 128 == original[pitched] // 128).all() and (shifted[pitched] >= 0).all()


def test_windows_never_cross_files_and_each_pass_visits_every_window_once():
    lengths = [50, 10, 33, 34, 120]  # the second is shorter than a window: it has none
    pieces = Pieces.from_arrays([np.full(n, 256 + i) for i, n in enumerate(lengths)])
    windows = Windows(pieces, seq_len=32, stride=4, batch_size=7, seed=3)
    assert len(windows) == 5 + 0 + 1 + 1 + 22  # (n - 33) // 4 + 1 windows of 33 tokens
    seen = np.concatenate([windows.order(g) for g in range(windows.batches_per_pass() * 2)])
    per_pass = len(windows)
    assert sorted(seen[:per_pass]) == list(range(per_pass))  # a pass is a permutation...
    assert list(seen[:per_pass]) != list(range(per_pass))  # ...shuffled
    assert sorted(seen[per_pass : 2 * per_pass]) == list(range(per_pass))  # the next pass goes on
    for g in range(6):
        x, y = windows.batch(g)
        assert x.shape == (7, 32) and y.shape == (7, 32, 2)
        assert (x == x[:, :1]).all() and (y[..., 0] == x[:, :1]).all()  # one file a window
        assert (y[..., 1] == -1).all()
    # files in two shards (as a store keeps them): each window is read from its own file's shard
    shards = [np.concatenate([np.full(40, 300), np.full(50, 301)]), np.full(60, 302)]
    two = Pieces(
        shards.__getitem__, np.array([0, 0, 1]), np.array([0, 40, 0]), np.array([40, 50, 60]), list("abc")
    )
    rows = Windows(two, seq_len=32, stride=1, batch_size=64, shuffle=False).tokens(np.arange(8 + 18 + 28))
    assert [int(r[0]) for r in rows] == [300] * 8 + [301] * 18 + [302] * 28 and (rows == rows[:, :1]).all()
    for n in (1, 2, 5, 1000, 4097):
        assert sorted(permute(np.arange(n), n, (0, 1))) == list(range(n))
    assert list(permute(np.arange(100), 100, (0, 1))) != list(permute(np.arange(100), 100, (0, 2)))


def test_batches_are_a_function_of_their_number_and_epochs_follow_on(midi_store):
    from midiseed.training.store import TokenStore

    tokens = TokenStore.open(midi_store)
    windows = Windows(Pieces.from_store(tokens), 32, 8, 4, seed=0, transpose_range=(-5, 6))
    a, b = TrainBatches(windows), TrainBatches(windows)
    np.testing.assert_array_equal(a.batch(7)[0], b.batch(7)[0])
    feed = keras_train(a, steps=3)
    feed.epoch = 2  # epoch 2 of 3 steps is batches 6, 7, 8
    np.testing.assert_array_equal(feed[1][0], a.batch(7)[0])
    # each window's shift is drawn afresh: it comes back transposed otherwise in the next pass
    plain = Windows(Pieces.from_store(tokens), 32, 8, 4, seed=0)
    shifts: dict[int, list[int]] = {}
    for g in range(2 * windows.batches_per_pass()):
        moved, base = windows.batch(g)[0], plain.batch(g)[0]
        for w, row, ref in zip(windows.order(g), moved, base):
            shifts.setdefault(int(w), []).append(int((row - ref)[ref < 256][0]))
    assert {len(s) for s in shifts.values()} == {2}
    assert sum(a != b for a, b in shifts.values()) > len(shifts) // 2
    assert {k for s in shifts.values() for k in s} <= set(range(-5, 7))


def test_training_from_a_store_and_resuming_with_steps_per_epoch(tmp_path, midi_store, tiny_run):
    opts = TrainOptions(
        data=str(midi_store),
        out=str(tmp_path / "run"),
        preset="tiny",
        batch_size=8,
        patience=50,
        steps_per_epoch=3,
        val_fraction=0.2,  # as the tiny run's
        epochs=3,
        time_limit=1e-6,  # minutes: up before the first epoch ends
    )
    first_metrics = train(opts)
    run = RunDir(tmp_path / "run")
    assert run.read_state().epoch == 1 and first_metrics["epochs_run"] == 1  # stopped by the clock
    assert run.model_path.is_file()  # and still wrote the model it had
    first = json.loads(run.history_path.read_text())
    opts.time_limit = None
    train(opts)  # the same command without the limit resumes after epoch 1
    history = json.loads(run.history_path.read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[0] == first[0]
    state = run.read_state()
    assert state.epoch == 3 and state.tokens_trained == 3 * 3 * 8 * 32
    # throughput counts every session of the run, not only the last one
    assert run.read_metrics()["train_tokens_per_second"] > 0
    # the store and the MIDI folder it came from split the same files the same way
    assert run.read_split() == RunDir(tiny_run).read_split()
    opts.preset = "default"
    with pytest.raises(ValueError, match="other settings: preset 'tiny' \\(now 'default'\\); use another"):
        train(opts)
    opts.out = run.checkpoint("last")  # a file: refused before the data is read
    with pytest.raises(ValueError, match=f"--out {opts.out}: {opts.out} is a file, not a folder"):
        train(opts)


def test_early_stopping_keeps_the_best_weights(tmp_path):
    import keras

    run = RunDir(tmp_path)
    run.create()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    state = RunState()
    keeper = RunKeeper(run, state, patience=2, tokens_per_epoch=1)
    for epoch, val in enumerate([3.0, 2.0, 2.5, 2.6]):
        model.layers[0].set_weights([np.full((2, 1), float(epoch)), np.zeros(1)])
        model.stop_training = False
        keeper.epoch_end(model, epoch, {"loss": 1.0, "val_loss": val})
    assert model.stop_training
    assert state.best_epoch == 2 and state.wait == 2
    assert run.read_state() == state
    best = keras.models.load_model(run.checkpoint("best"))
    assert best.layers[0].get_weights()[0][0, 0] == 1.0  # the weights of epoch 2, not the last


def test_data_parallel_training_on_two_logical_cpus(tmp_path, midi_store):
    code = f"""
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
from midiseed.training.distribute import split_cpu
from midiseed.training.train import TrainOptions, train
split_cpu(2)
m = train(TrainOptions(data={str(midi_store)!r}, out={str(tmp_path / "dp")!r}, preset="tiny", epochs=1,
                       batch_size=16, transpose="0", devices="CPU:0,CPU:1", steps_per_epoch=4))
print("LOSS", m["held_out_loss"])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "data-parallel training on 2 devices" in proc.stdout
    assert "LOSS" in proc.stdout


def test_train_cli_bad_inputs_exit_2_with_one_line(tmp_path, midi_folder, midi_store):
    cases = [
        (["--data", str(tmp_path / "missing")], "does not exist"),
        (["--data", str(tmp_path)], "no .mid"),
        (["--data", str(midi_store), "--seq-len", "5000", "--preset", "tiny"], "seq_len 5000 is longer"),
        (["--data", str(midi_folder), "--preset", "huge"], "unknown preset"),
        (["--data", str(midi_store), "--transpose", "3..1"], "transpose range"),
        (["--data", str(midi_store), "--val-fraction", "0.5", "--test-fraction", "0.6"], "test fraction"),
        (["--data", str(midi_store), "--devices", "CPU:0,GPU:7"], "--devices CPU:0,GPU:7: no GPU:7 here"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["train", "--out", str(tmp_path / "r"), *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, result.output
        assert "Traceback" not in result.output


def test_folder_of_only_broken_files_is_a_clear_error(tmp_path):
    from tests.conftest import SHARED_MIDI

    for name in ["test-empty-file.mid", "test-not-a-midi-file.mid"]:
        (tmp_path / name).write_bytes((SHARED_MIDI / name).read_bytes())
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "no readable MIDI file" in result.output


def test_data_music21_writes_midi_files(tmp_path):
    result = runner.invoke(app, ["data", "music21", "--out", str(tmp_path), "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.rglob("*.mid"))) == 2


def test_importing_the_daemon_and_cli_never_imports_tensorflow():
    code = (
        "import sys, midiseed.cli, midiseed.daemon.service, midiseed.evaluate, midiseed.runtime.generate; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'music21')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ctrl_c_in_train_says_how_to_resume_and_exits_130(tmp_path, midi_store, monkeypatch):
    from midiseed.training import train as train_module

    def interrupted(opts):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", interrupted)
    result = runner.invoke(app, ["train", "--data", str(midi_store), "--out", str(tmp_path / "r")])
    assert result.exit_code == 130
    assert (
        result.stderr
        == f"interrupted: the same command resumes {tmp_path / 'r'} after its last finished epoch\n"
    )
