import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from midiseed.cli import app
from midiseed.runtime.codec import Codec
from midiseed.training.train import TrainOptions, train

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
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["model"]["lstm_units"] == [32, 32]
    codec = Codec.from_json((tiny_run / "codec.json").read_text())
    assert len(codec) == config["model"]["vocab_size"] == 128 + 128 + codec.grid.max_steps


def test_held_out_files_are_never_trained_on(tiny_run):
    split = json.loads((tiny_run / "split.json").read_text())
    assert split["held_out"] and split["train"]
    assert not set(split["held_out"]) & set(split["train"])
    assert len(split["held_out"]) + len(split["train"]) == 10


def test_training_resumes_where_it_stopped(tmp_path, midi_folder):
    opts = TrainOptions(
        data=str(midi_folder),
        out=str(tmp_path / "run"),
        preset="tiny",
        epochs=1,
        batch_size=16,
        transpose="0",
        patience=50,
    )
    train(opts)
    first = json.loads((tmp_path / "run" / "history.json").read_text())
    opts.epochs = 3
    train(opts)  # as if the first run had been interrupted after one epoch
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[0] == first[0]
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epoch"] == 3
    # throughput counts every session of the run, not only the last one
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train_tokens_per_second"] > 0
    opts.preset = "default"
    with pytest.raises(ValueError, match="other settings"):
        train(opts)


def test_early_stopping_keeps_the_best_weights(tmp_path):
    import keras

    from midiseed.training.train import RunKeeper

    (tmp_path / "checkpoints").mkdir()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    state = {"epoch": 0, "best": None, "wait": 0, "history": []}
    keeper = RunKeeper(tmp_path, state, patience=2, tokens_per_epoch=1)
    weights = []
    for epoch, val in enumerate([3.0, 2.0, 2.5, 2.6]):
        model.layers[0].set_weights([np.full((2, 1), float(epoch)), np.zeros(1)])
        weights.append(epoch)
        model.stop_training = False
        keeper.epoch_end(model, epoch, {"loss": 1.0, "val_loss": val})
    assert model.stop_training
    assert state["best_epoch"] == 2 and state["wait"] == 2
    best = keras.models.load_model(tmp_path / "checkpoints" / "best.keras")
    assert best.layers[0].get_weights()[0][0, 0] == 1.0  # the weights of epoch 2, not the last


def test_data_parallel_training_on_two_logical_cpus(tmp_path, midi_folder):
    code = f"""
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
from midiseed.training.train import TrainOptions, split_cpu, train
split_cpu(2)
m = train(TrainOptions(data={str(midi_folder)!r}, out={str(tmp_path / "dp")!r}, preset="tiny", epochs=1,
                       batch_size=16, transpose="0", devices="CPU:0,CPU:1"))
print("LOSS", m["held_out_loss"])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "data-parallel training on 2 devices" in proc.stdout
    assert "LOSS" in proc.stdout


def test_train_cli_bad_inputs_exit_2_with_one_line(tmp_path, midi_folder):
    cases = [
        (["--data", str(tmp_path / "missing")], "does not exist"),
        (["--data", str(tmp_path)], "no .mid"),
        (["--data", str(midi_folder), "--seq-len", "5000", "--preset", "tiny"], "seq_len 5000 is longer"),
        (["--data", str(midi_folder), "--preset", "huge"], "unknown preset"),
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
    assert len(list(tmp_path.glob("*.mid"))) == 2


def test_importing_the_daemon_and_cli_never_imports_tensorflow():
    code = (
        "import sys, midiseed.cli, midiseed.daemon.service, midiseed.evaluate, midiseed.runtime.generate; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'music21')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
