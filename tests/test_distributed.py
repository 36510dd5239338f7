"""Data-parallel training on several machines: MultiWorkerMirroredStrategy from TF_CONFIG, run
here as two worker processes on localhost."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from midiseed.errors import BadValue
from midiseed.training.distribute import tf_config, worker_share
from midiseed.training.rundir import RunDir

WORKER = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
logging.getLogger("midiseed").setLevel(logging.DEBUG)  # each worker's files
from midiseed.training.train import TrainOptions, train
m = train(TrainOptions(data={data!r}, out={out!r}, preset="tiny", epochs={epochs}, batch_size=8,
                       val_fraction=0.2, steps_per_epoch=3, patience=5, time_limit={time_limit!r}))
print("LOSS", m["held_out_loss"])
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _two_workers(out, midi_store, epochs: int = 2, time_limits=(None, None)) -> list[str]:
    """Train on two worker processes on localhost; their outputs, once both have exited 0."""
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
    procs = []
    for index, time_limit in enumerate(time_limits):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        code = WORKER.format(data=str(midi_store), out=str(out), epochs=epochs, time_limit=time_limit)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=400)[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("a worker did not finish in 400 s")
    for proc, text in zip(procs, outputs):
        assert proc.returncode == 0, text[-3000:]
        assert "LOSS" in text
    return outputs


def test_two_workers_on_localhost_train_the_same_weights_from_their_own_files(tmp_path, midi_store):
    out = tmp_path / "run"
    outputs = _two_workers(out, midi_store)
    assert "worker 0 of 2: data-parallel over 2 replicas" in outputs[0]
    assert "worker 1 of 2" in outputs[1]
    chief, other = RunDir(out), RunDir(out).worker(1)
    # each worker read its own training files (one shard: split by file), all of them between them
    shares = [
        json.loads(line.split("reads ", 1)[1])
        for text in outputs
        for line in text.splitlines()
        if "reads [" in line
    ]
    train_files = chief.read_split()["train"]
    assert len(shares) == 2 and not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == sorted(train_files)
    # gradients were all-reduced every step: both end with the same weights and the same figures
    import keras

    for which in ("last", "best"):
        a = keras.models.load_model(chief.checkpoint(which), compile=False).get_weights()
        b = keras.models.load_model(other.checkpoint(which), compile=False).get_weights()
        assert all(np.array_equal(x, y) for x, y in zip(a, b)), which
    assert chief.read_state().history == other.read_state().history
    assert [h["epoch"] for h in chief.read_state().history] == [1, 2]
    assert chief.model_path.is_file() and chief.read_metrics()["epochs_run"] == 2


def test_worker_share_by_shard_or_by_file():
    shards = [0, 0, 1, 2, 3, 3]
    assert worker_share(shards, 4, 2, 0) == [0, 1, 3]  # shards 0 and 2
    assert worker_share(shards, 4, 2, 1) == [2, 4, 5]  # shards 1 and 3
    assert worker_share([0] * 5, 1, 2, 1) == [1, 3]  # one shard: by file
    assert worker_share([0, 0, 2], 3, 2, 1) == [1]  # no file in an odd shard: by file


def test_tf_config_names_the_worker(monkeypatch):
    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert tf_config() == (3, 2)
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}})
    )
    assert tf_config() is None  # one worker: no cluster
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(BadValue, match="TF_CONFIG"):
        tf_config()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 5}}))
    with pytest.raises(BadValue, match="not in its cluster"):
        tf_config()


def test_the_workers_stop_together_when_one_runs_out_of_time(tmp_path, midi_store):
    """Workers start at different moments, so their --time-limit runs out at different epoch ends;
    a worker that stopped alone would leave the other waiting on a gradient all-reduce (it crashed
    when the first closed). Here only the chief's time is up after epoch 1: both stop there."""
    out = tmp_path / "run"
    outputs = _two_workers(out, midi_store, epochs=4, time_limits=(1e-6, None))
    assert "time limit reached after epoch 1" in outputs[1]  # the other worker heard it
    chief, other = RunDir(out), RunDir(out).worker(1)
    assert [h["epoch"] for h in chief.read_state().history] == [1]
    assert chief.read_state().history == other.read_state().history
