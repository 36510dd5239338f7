import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="midiseed-test-cache-")  # never the user's cache

from midiseed.runtime.midifile import write_notes

ROOT = Path(__file__).resolve().parents[1]
SHARED_MIDI = ROOT.parent / "shared" / "test-midi-files" / "midi"


def make_piece(rng: np.random.Generator, bars: int = 12) -> np.ndarray:
    """A small real-sounding piece: a melody over held triads, so it has chords, holds and rests."""
    notes = []
    roots = [0, 5, 7, 0, 9, 2, 7, 0]
    key = int(rng.integers(55, 62))
    for bar in range(bars):
        t = bar * 16
        root = key + roots[bar % len(roots)]
        for p in (root - 12, root - 8 + (root % 2), root - 5):
            notes.append((p, t, t + 16))
        step = 0
        while step < 16:
            length = int(rng.choice([2, 2, 4, 4, 4, 8]))
            length = min(length, 16 - step)
            if rng.random() > 0.1:
                notes.append((root + int(rng.choice([0, 2, 4, 5, 7, 9, 12])), t + step, t + step + length))
            step += length
    return np.array(notes)


@pytest.fixture(scope="session")
def midi_folder(tmp_path_factory) -> Path:
    """Ten short real MIDI files, written with mido."""
    folder = tmp_path_factory.mktemp("midi")
    rng = np.random.default_rng(7)
    for i in range(10):
        write_notes(make_piece(rng), folder / f"piece{i:02d}.mid", bpm=100 + 5 * i)
    return folder


@pytest.fixture(scope="session")
def midi_store(tmp_path_factory, midi_folder) -> Path:
    """The token store of `midi_folder` (one shard), made with `midiseed data tokenize`'s code."""
    from midiseed.training import store

    out = tmp_path_factory.mktemp("stores") / "midi"
    store.tokenize(midi_folder, out, workers=1)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, midi_folder) -> Path:
    """A trained run directory of the tiny preset (two epochs of 45 steps: about as many windows as
    every transposition in -1..1 of the training files), trained from the MIDI folder itself."""
    from midiseed.training.train import TrainOptions, train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(
        TrainOptions(
            data=str(midi_folder),
            out=str(out),
            preset="tiny",
            epochs=2,
            batch_size=16,
            val_fraction=0.2,
            transpose="-1..1",
            steps_per_epoch=45,
        )
    )
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory):
    """(path, parity report) of the tiny run exported to ONNX (fp32)."""
    from midiseed.export.onnx_export import export

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    report = export(tiny_run, out)
    return out, report


@pytest.fixture(scope="session")
def jack():
    """A JACK server for the port tests: the one running (.ci/run starts one), or a private dummy one
    for this session, stopped at its end."""
    from tests.jack import start_server

    proc = start_server()
    yield
    if proc is not None:
        proc.terminate()
        proc.wait(10)


def check_decoding_key(tmp_path: Path, key: str, good: str, bad: str):
    """config.toml's `[decoding] key = good` reaches the served generator (returned, to be looked
    at), and `key = bad` is refused naming the key."""
    from midiseed.daemon.config import load
    from midiseed.daemon.service import Service

    conf = tmp_path / "config.toml"
    conf.write_text(f"[decoding]\n{key} = {good}\n")
    generator = Service._generator(load(conf))
    conf.write_text(f"[decoding]\n{key} = {bad}\n")
    with pytest.raises(ValueError, match=key):
        load(conf)
    return generator
