"""The run directory: every file a training run writes, named here and nowhere else.

    config.json      options, model config, data summary (what `export` reads)
    codec.json       grid + vocabulary (the token codec the model was trained with)
    split.json       which files trained it, which were validation, which were test (by file)
    history.json     per-epoch loss/accuracy, training and validation; history.png plots it
    state.json       `RunState`: what a resumed run continues from
    checkpoints/     last.keras (with optimizer state) and best.keras
    model.keras      the best weights (or the last: keep="last"), written when training ends
    metrics.json     validation (and test) loss and accuracy of model.keras
    workers/<i>/     under multi-worker training, worker i's own run directory (i > 0)

Every write that a crash could leave half done goes to a temporary name first, then is renamed.
`RunState` is state.json; `RunKeeper` is the Keras callback that writes the state, the history and
the checkpoints after every epoch, and stops the run early.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from midiseed.runtime.codec import Codec

log = logging.getLogger(__name__)

CONFIG = "config.json"
CODEC = "codec.json"
SPLIT = "split.json"
HISTORY = "history.json"
HISTORY_PNG = "history.png"
STATE = "state.json"
CHECKPOINTS = "checkpoints"
MODEL = "model.keras"
METRICS = "metrics.json"
WORKERS = "workers"
EXPORT_NEEDS = (CONFIG, CODEC, MODEL, METRICS, SPLIT)  # what `midiseed export` reads


@dataclass
class RunState:
    """Where a run stands after its last finished epoch; saved as state.json after every epoch."""

    epoch: int = 0  # epochs finished
    best: float | None = None  # lowest validation loss so far
    best_epoch: int = 0  # the epoch that reached it (1-based; 0: none yet)
    wait: int = 0  # epochs since the best one (early stopping's patience used)
    history: list[dict] = field(default_factory=list)  # one dict of logs per epoch
    tokens_trained: int = 0  # over every session of the run
    train_seconds: float = 0.0  # time in training batches only (not validation, not checkpoints)

    def tokens_per_second(self) -> float | None:
        return round(self.tokens_trained / self.train_seconds, 1) if self.train_seconds else None

    @classmethod
    def from_dict(cls, data: dict) -> RunState:
        """From state.json; keys this version does not know are ignored, missing ones default."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class RunDir:
    """One run directory (see the module docstring for its files)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # paths
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG

    @property
    def codec_path(self) -> Path:
        return self.root / CODEC

    @property
    def split_path(self) -> Path:
        return self.root / SPLIT

    @property
    def state_path(self) -> Path:
        return self.root / STATE

    @property
    def model_path(self) -> Path:
        return self.root / MODEL

    @property
    def metrics_path(self) -> Path:
        return self.root / METRICS

    @property
    def history_path(self) -> Path:
        return self.root / HISTORY

    @property
    def history_png(self) -> Path:
        return self.root / HISTORY_PNG

    def checkpoint(self, which: str) -> Path:
        """checkpoints/last.keras or checkpoints/best.keras."""
        if which not in ("last", "best"):
            raise ValueError(f"no checkpoint called {which!r}")
        return self.root / CHECKPOINTS / f"{which}.keras"

    def worker(self, index: int) -> RunDir:
        """The run directory worker `index` (> 0) of a multi-worker run keeps its own files in."""
        return RunDir(self.root / WORKERS / str(index))

    # whole-run questions
    def create(self) -> None:
        (self.root / CHECKPOINTS).mkdir(parents=True, exist_ok=True)

    def has_state(self) -> bool:
        """True when a run has finished at least one epoch here (it can be resumed)."""
        return self.state_path.is_file()

    def missing(self, names: tuple[str, ...] = EXPORT_NEEDS) -> list[str]:
        """Which of `names` are not files here."""
        return [n for n in names if not (self.root / n).is_file()]

    # reading and writing
    def read_config(self) -> dict:
        return json.loads(self.config_path.read_text())

    def write_config(self, config: dict) -> None:
        _write_json(self.config_path, config)

    def read_codec(self) -> Codec:
        return Codec.from_json(self.codec_path.read_text())

    def write_codec(self, codec: Codec) -> None:
        _write_text(self.codec_path, codec.to_json())

    def read_split(self) -> dict:
        return json.loads(self.split_path.read_text())

    def write_split(self, split: dict) -> None:
        _write_json(self.split_path, split)

    def read_state(self) -> RunState:
        return RunState.from_dict(json.loads(self.state_path.read_text()))

    def write_state(self, state: RunState) -> None:
        """state.json, then history.json and history.png from it. The state is written first and
        atomically: it is what a resumed run trusts (a crash before it repeats the epoch)."""
        _write_text(self.state_path, json.dumps(asdict(state)))
        _write_json(self.history_path, state.history)
        plot_history(state.history, self.history_png)

    def read_metrics(self) -> dict:
        return json.loads(self.metrics_path.read_text())

    def write_metrics(self, metrics: dict) -> None:
        _write_json(self.metrics_path, metrics)

    def save_checkpoint(self, model, which: str) -> None:
        """Save a Keras model (with its optimizer state) as checkpoint `which`, atomically."""
        path = self.checkpoint(which)
        tmp = path.with_name(f"{which}.tmp.keras")
        model.save(tmp)
        os.replace(tmp, path)

    def save_model(self, model) -> None:
        """model.keras: the weights the run keeps."""
        tmp = self.root / "model.tmp.keras"
        model.save(tmp)
        os.replace(tmp, self.model_path)


class RunKeeper:
    """Per epoch: history, checkpoints, early stopping with the best weights kept, resumable state."""

    def __init__(self, run: RunDir, state: RunState, patience: int, tokens_per_epoch: int) -> None:
        self.run, self.state, self.patience = run, state, patience
        self.tokens_per_epoch = tokens_per_epoch
        self.feeds = None  # the training PyDataset, told each epoch's number (its batches depend on it)
        self.stop_at: float | None = None  # time.monotonic() after which the session stops (--time-limit)
        # turns this worker's "my time is up" into the cluster's (Cluster.any_worker): workers that
        # stopped at different epochs would leave the others waiting on a gradient all-reduce
        self.any_worker: Callable[[bool], bool] = lambda mine: mine

    def callback(self):
        import keras

        keeper = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if keeper.feeds is not None:
                    keeper.feeds.epoch = epoch

            def on_train_batch_begin(self, batch, logs=None):
                self._t = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                keeper.state.train_seconds += time.perf_counter() - self._t

            def on_epoch_end(self, epoch, logs=None):
                keeper.state.tokens_trained += keeper.tokens_per_epoch
                keeper.epoch_end(self.model, epoch, logs or {})

        return Callback()

    def epoch_end(self, model, epoch: int, logs: dict) -> None:
        """Record the epoch, keep the best weights, save what a resumed run needs, stop if stale."""
        st = self.state
        st.history.append({"epoch": epoch + 1, **{k: float(np.ravel(v)[0]) for k, v in logs.items()}})
        val = float(np.ravel(logs["val_loss"])[0])
        if st.best is None or val < st.best:
            st.best, st.best_epoch, st.wait = val, epoch + 1, 0
            self.run.save_checkpoint(model, "best")
        else:
            st.wait += 1
        self.run.save_checkpoint(model, "last")
        st.epoch = epoch + 1
        self.run.write_state(st)  # last: a crash before it repeats the epoch
        out_of_time = self.any_worker(self.stop_at is not None and time.monotonic() >= self.stop_at)
        if st.wait >= self.patience:
            log.info(
                "no better validation loss for %d epochs: stopping; best was epoch %d",
                self.patience,
                st.best_epoch,
            )
            model.stop_training = True
        elif out_of_time:
            log.info("time limit reached after epoch %d: stopping (resume with the same command)", st.epoch)
            model.stop_training = True


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json(path: Path, data) -> None:
    _write_text(path, json.dumps(data, indent=1))


def plot_history(history: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, training and validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ["loss", "accuracy"]):
        ax.plot(epochs, [h.get(key) for h in history], label="training")
        ax.plot(epochs, [h.get(f"val_{key}") for h in history], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
