"""`midiseed train`: a folder of MIDI files -> a run directory with a trained LSTM.

Run directory:
    config.json      options, model config, data summary (what `export` reads)
    codec.json       grid + vocabulary (the token codec the model was trained with)
    split.json       which files were held out (the split is by file, never by window)
    history.json     per-epoch loss/accuracy, train and held-out; history.png plots it
    state.json       epoch, best held-out loss, patience used: what a resumed run continues from
    checkpoints/     last.keras (with optimizer state) and best.keras
    model.keras      the best weights (or the last: keep="last"), written when training ends
    metrics.json     held-out loss and accuracy of model.keras
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from midiseed.errors import BadValue
from midiseed.runtime.codec import Codec, Grid
from midiseed.training import loops
from midiseed.training.corpus import DataError, load_corpus, split_by_file
from midiseed.training.dataset import (
    batch,
    encode_pieces,
    piece_events,
    transposition_range,
)
from midiseed.training.model import build_model, preset_config

log = logging.getLogger(__name__)

LOOP_SEARCH_EVERY = 50  # batches between looks for the model's own greedy loops (--anti-loop)


@dataclass
class TrainOptions:
    """Everything `midiseed train` takes; saved in config.json."""

    data: str
    out: str
    preset: str = "default"
    epochs: int = 150
    batch_size: int = 128
    seq_len: int | None = None  # None: the preset's
    patience: int = 10  # epochs without a better held-out loss before stopping
    val_fraction: float = 0.1
    transpose: str = "-5..6"  # augmentation: every transposition in this range (training split only)
    stride: int | None = None  # between window starts; None: seq_len // 4
    learning_rate: float = 1e-3
    include_drums: bool = False
    seed: int = 0
    devices: str = "auto"  # auto, or a comma list such as "CPU:0,CPU:1" for data-parallel training
    workers: int | None = None  # parsing processes; None: one per core
    anti_loop: float = 0.0  # extra share of each batch made of short stretches repeated (DITTO, loops.py)
    init: str | None = None  # a run dir whose model.keras weights this run starts from (fine-tuning)
    loop_period: int = loops.MAX_LOOP_EVENTS  # longest own greedy loop (events) --anti-loop trains against
    keep: str = "best"  # which epoch becomes model.keras: best held-out loss, or the last one


def _window_dataset(
    tokens: np.ndarray,
    starts: np.ndarray,
    seq_len: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    replicas: int,
    anti_loop: float = 0.0,
    offsets: np.ndarray | None = None,
    first_duration: int = 256,
    first_epoch: int = 0,
):
    """Batches of (inputs, packed targets). With anti_loop > 0, each batch of windows gets
    anti_loop / (1 - anti_loop) as many again of repeated stretches (`loops.repeated_windows`)."""
    import keras

    # every batch must split evenly over the replicas: trim the windows to a multiple of them
    starts = (
        starts[: len(starts) - len(starts) % replicas]
        if len(starts) >= replicas
        else np.resize(starts, replicas)
    )
    batch_size = max(replicas, batch_size - batch_size % replicas)
    extra = round(batch_size * anti_loop / (1 - anti_loop)) if anti_loop > 0 else 0
    extra = max(replicas, extra - extra % replicas) if extra else 0
    if extra:
        ends, piece_of = loops.event_ends(tokens, offsets, first_duration)

    class Windows(keras.utils.PyDataset):
        """Batches sliced from the flat token array on demand (memory O(tokens))."""

        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = starts.copy()
            self.epoch = first_epoch
            self.tokens, self.offsets = tokens, offsets
            self.own: list = []  # loops of the model's own greedy decoding (`loops.loop_finder`)
            if shuffle:
                self.rng.shuffle(self.order)

        def __len__(self) -> int:
            return math.ceil(len(self.order) / batch_size)

        def __getitem__(self, i: int):
            x, y = batch(tokens, self.order[i * batch_size : (i + 1) * batch_size], seq_len)
            y = loops.pack(y)
            if extra:
                # a generator per batch: the same batch whatever order the loader's workers ask
                rng = np.random.default_rng((seed, self.epoch, i))
                own = extra // 2 if self.own else 0
                xr, yr = loops.repeated_windows(
                    tokens, ends, piece_of, offsets[:-1], extra - own, seq_len, rng, first_duration
                )
                x, y = np.concatenate([x, xr]), np.concatenate([y, yr])
                if own:
                    xo, yo = loops.own_windows(self.own, own, seq_len, rng)
                    x, y = np.concatenate([x, xo]), np.concatenate([y, yo])
            return x, y

        @property
        def windows_per_epoch(self) -> int:
            return len(self.order) + extra * len(self)

        def on_epoch_end(self) -> None:
            self.epoch += 1
            if shuffle:
                self.rng.shuffle(self.order)

    return Windows()


def _strategy_scope(devices: str):
    """(context to build and compile the model in, number of replicas): data-parallel over several
    devices when there are (tf.distribute under TensorFlow, keras.distribution under JAX)."""
    import contextlib

    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if devices == "auto":
            gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
            chosen = gpus if len(gpus) > 1 else []
        else:
            chosen = [d.strip() for d in devices.split(",") if d.strip()]
        if len(chosen) > 1:
            strategy = tf.distribute.MirroredStrategy(chosen)
            log.info(
                "data-parallel training on %d devices: %s", strategy.num_replicas_in_sync, ", ".join(chosen)
            )
            return strategy.scope(), strategy.num_replicas_in_sync
        log.info(
            "training on %s",
            chosen[0] if chosen else ("GPU" if tf.config.list_logical_devices("GPU") else "CPU"),
        )
    elif backend == "jax":
        import jax

        all_devices = jax.devices()
        if len(all_devices) > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=all_devices))
            log.info("data-parallel training on %d %s devices", len(all_devices), all_devices[0].platform)
            return contextlib.nullcontext(), len(all_devices)
        else:
            log.info("training on %s", all_devices[0].platform)
    return contextlib.nullcontext(), 1


def split_cpu(n: int) -> None:
    """Present the CPU as n logical devices (TensorFlow only; before TensorFlow starts)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
    )


def prepare_data(opts: TrainOptions, codec: Codec, on_skip=None):
    """Read, split, augment and encode. Returns (train TokenSet, held-out TokenSet, corpus, split)."""
    grid = codec.grid
    corpus = load_corpus(Path(opts.data), grid, opts.include_drums, opts.workers, on_skip=on_skip)
    if not corpus.files:
        raise DataError(f"no readable MIDI file in {opts.data} ({len(corpus.skipped)} skipped)")
    if len(corpus.files) < 2:
        raise DataError(f"{opts.data} has only one readable MIDI file; a held-out split needs two or more")
    train_idx, val_idx = split_by_file(corpus.files, opts.val_fraction)
    shifts = transposition_range(opts.transpose)
    train_pieces = piece_events([corpus.notes[i] for i in train_idx], grid, shifts)
    val_pieces = piece_events([corpus.notes[i] for i in val_idx], grid, [0])
    split = {"train": [corpus.files[i] for i in train_idx], "held_out": [corpus.files[i] for i in val_idx]}
    return encode_pieces(codec, train_pieces), encode_pieces(codec, val_pieces), corpus, split


def train(opts: TrainOptions) -> dict:
    """Train (or resume) a run; returns the final metrics. Raises DataError/ValueError on bad input."""
    import keras

    run = Path(opts.out)
    if opts.epochs < 1 or opts.batch_size < 1 or opts.patience < 1:
        raise BadValue("epochs, batch size and patience must each be at least 1")
    if opts.keep not in ("best", "last"):
        raise BadValue(f"keep must be best or last, got {opts.keep!r}")
    if not 1 <= opts.loop_period <= 64:
        raise BadValue(f"loop period must lie in 1..64 events, got {opts.loop_period}")
    if not 0 <= opts.anti_loop < 1:
        raise BadValue(f"anti-loop share must be at least 0 and below 1, got {opts.anti_loop}")
    codec = Codec(Grid())
    state_path = run / "state.json"
    state = {"epoch": 0, "best": None, "wait": 0, "history": []}
    if state_path.exists():
        saved = json.loads((run / "config.json").read_text())
        free = {"epochs": opts.epochs, "keep": opts.keep}  # may change when resuming
        # options added since the run began take their defaults
        if asdict(TrainOptions(**saved["options"])) | free != asdict(opts) | free:
            raise BadValue(f"{run} holds a run with other settings; use another --out or delete it")
        state = json.loads(state_path.read_text())
        codec = Codec.from_json((run / "codec.json").read_text())  # the codec it began with
        log.info("resuming %s after epoch %d", run, state["epoch"])

    def skipped(rel: str, reason: str) -> None:
        log.warning("skipped %s: %s", rel, reason)

    t0 = time.perf_counter()
    train_set, val_set, corpus, split = prepare_data(opts, codec, skipped)
    prep_s = time.perf_counter() - t0
    cfg = preset_config(opts.preset, len(codec), seq_len=opts.seq_len)
    stride = opts.stride or max(1, cfg.seq_len // 4)
    train_starts = train_set.window_starts(cfg.seq_len, stride)
    val_starts = val_set.window_starts(cfg.seq_len, max(1, cfg.seq_len // 2))
    longest = int(max(np.diff(train_set.offsets).max(initial=0), np.diff(val_set.offsets).max(initial=0)))
    if len(train_starts) == 0 or len(val_starts) == 0:
        side = "training" if len(train_starts) == 0 else "held-out"
        raise DataError(
            f"seq_len {cfg.seq_len} is longer than every {side} piece (longest has {longest} events); "
            "use a smaller --seq-len"
        )
    if opts.init:
        check_init(Path(opts.init), cfg, codec, split)
    summary = {
        **corpus.summary(),
        "train_files": len(split["train"]),
        "held_out_files": len(split["held_out"]),
        "train_tokens": len(train_set.tokens),
        "held_out_tokens": len(val_set.tokens),
        "train_windows": len(train_starts),
        "transpose": opts.transpose,
        "data": str(opts.data),
        "prepare_seconds": round(prep_s, 2),
    }
    log.info(
        "data: %d files read, %d skipped; %d training tokens (%d windows), %d held-out tokens; vocab %d",
        summary["files_read"],
        summary["files_skipped"],
        summary["train_tokens"],
        len(train_starts),
        summary["held_out_tokens"],
        len(codec),
    )
    run.mkdir(parents=True, exist_ok=True)
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "codec.json").write_text(codec.to_json())
    (run / "split.json").write_text(json.dumps(split, indent=1))
    (run / "config.json").write_text(
        json.dumps(
            {
                "options": asdict(opts),
                "preset": opts.preset,
                "model": cfg.to_dict(),
                "data": summary,
                "backend": keras.backend.backend(),
            },
            indent=1,
        )
    )

    keras.utils.set_random_seed(opts.seed + state["epoch"])
    scope, replicas = _strategy_scope(opts.devices)
    train_data = _window_dataset(
        train_set.tokens,
        train_starts,
        cfg.seq_len,
        opts.batch_size,
        True,
        opts.seed,
        replicas,
        anti_loop=opts.anti_loop,
        offsets=train_set.offsets,
        first_duration=codec.duration(1),
        first_epoch=state["epoch"],
    )
    val_data = _window_dataset(
        val_set.tokens, val_starts, cfg.seq_len, opts.batch_size, False, opts.seed, replicas
    )
    loss_fn, accuracy = loops.loss_and_metric()  # registers them, so checkpoints load
    with scope:
        if state["epoch"] > 0:
            model = keras.models.load_model(run / "checkpoints" / "last.keras")
            if not isinstance(model.loss, type(loss_fn)):  # saved before targets were packed
                model.compile(optimizer=model.optimizer, loss=loss_fn, metrics=[accuracy])
        else:
            model = build_model(cfg)
            if opts.init:
                start = keras.models.load_model(Path(opts.init) / "model.keras", compile=False)
                model.set_weights(start.get_weights())
                log.info("fine-tuning the weights of %s", opts.init)
                # keep the batch-norm statistics it learnt: batches with repeated stretches
                # (--anti-loop) are not the music the network will be fed
                for layer in model.layers:
                    if isinstance(layer, keras.layers.BatchNormalization):
                        layer.trainable = False
            model.compile(
                optimizer=keras.optimizers.Adam(opts.learning_rate), loss=loss_fn, metrics=[accuracy]
            )
    keeper = RunKeeper(run, state, opts.patience, train_data.windows_per_epoch * cfg.seq_len)
    callbacks = [keeper._make(keras)]
    if opts.anti_loop:  # first: its figure goes into the epoch's logs before RunKeeper writes them
        callbacks.insert(
            0,
            loops.loop_finder(
                train_data, cfg, codec, opts.seed, every=LOOP_SEARCH_EVERY, max_events=opts.loop_period
            ),
        )
    if state["epoch"] < opts.epochs and state["wait"] < opts.patience:
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=opts.epochs,
            initial_epoch=state["epoch"],
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )
    else:
        log.info("%s already finished training (epoch %d); writing its final model", run, state["epoch"])
    best = keras.models.load_model(run / "checkpoints" / f"{opts.keep}.keras")
    best.save(run / "model.keras")
    loss, acc = best.evaluate(val_data, verbose=0)
    metrics = {
        "held_out_loss": float(loss),
        "held_out_accuracy": float(acc),
        "best_epoch": int(state["best_epoch"]),
        "kept_epoch": int(state["best_epoch"] if opts.keep == "best" else state["epoch"]),
        "epochs_run": int(state["epoch"]),
        "train_tokens_per_second": keeper.tokens_per_second(),
        "vocab_size": len(codec),
        "parameters": int(best.count_params()),
    }
    (run / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def check_init(init: Path, cfg, codec: Codec, split: dict) -> None:
    """A run to fine-tune from must hold the same network and codec, and must not have trained on
    any file this run holds out (its held-out figures would be flattering). Raises ValueError."""
    try:
        config = json.loads((init / "config.json").read_text())
        init_codec = Codec.from_json((init / "codec.json").read_text())
        init_split = json.loads((init / "split.json").read_text())
    except (OSError, ValueError, KeyError) as err:
        raise BadValue(f"--init {init} is not a finished run directory: {err}") from None
    if not (init / "model.keras").is_file():
        raise BadValue(f"--init {init} has no model.keras; finish its training first")
    if config.get("model") != cfg.to_dict():
        raise BadValue(f"--init {init} holds a different network ({config.get('preset')}) from this run's")
    if init_codec.keys != codec.keys or init_codec.grid != codec.grid:
        raise BadValue(f"--init {init} uses another token codec")
    leaked = set(init_split.get("train", [])) & set(split["held_out"])
    if leaked:
        raise BadValue(
            f"--init {init} trained on {len(leaked)} of the files this run holds out "
            f"(e.g. {sorted(leaked)[0]}); use the same data folder and --val-fraction"
        )


class RunKeeper:
    """Per epoch: history, checkpoints, early stopping with the best weights kept, resumable state."""

    def __init__(self, run: Path, state: dict, patience: int, tokens_per_epoch: int) -> None:
        self.run, self.state, self.patience = run, state, patience
        self.tokens_per_epoch = tokens_per_epoch
        # time in training batches only (not validation, not checkpoints), over every session of the run
        self.tokens = state.setdefault("tokens_trained", 0)
        self.train_seconds = state.setdefault("train_seconds", 0.0)

    def tokens_per_second(self) -> float | None:
        return round(self.tokens / self.train_seconds, 1) if self.train_seconds else None

    def _make(self, keras):
        keeper = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                self._t = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                keeper.train_seconds += time.perf_counter() - self._t

            def on_epoch_end(self, epoch, logs=None):
                keeper.tokens += keeper.tokens_per_epoch
                keeper.epoch_end(self.model, epoch, logs or {})

        return Callback()

    def epoch_end(self, model, epoch: int, logs: dict) -> None:
        st = self.state
        st["history"].append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        val = float(logs["val_loss"])
        ck = self.run / "checkpoints"
        if st["best"] is None or val < st["best"]:
            st["best"], st["best_epoch"], st["wait"] = val, epoch + 1, 0
            model.save(ck / "best.tmp.keras")
            os.replace(ck / "best.tmp.keras", ck / "best.keras")
        else:
            st["wait"] += 1
        model.save(ck / "last.tmp.keras")
        os.replace(ck / "last.tmp.keras", ck / "last.keras")
        st["epoch"] = epoch + 1
        st["tokens_trained"], st["train_seconds"] = self.tokens, self.train_seconds
        tmp = self.run / "state.tmp.json"
        tmp.write_text(json.dumps(st))
        os.replace(tmp, self.run / "state.json")  # written last: a crash before it repeats the epoch
        (self.run / "history.json").write_text(json.dumps(st["history"], indent=1))
        plot_history(st["history"], self.run / "history.png")
        if st["wait"] >= self.patience:
            log.info(
                "no better held-out loss for %d epochs: stopping; best was epoch %d",
                self.patience,
                st["best_epoch"],
            )
            model.stop_training = True


def plot_history(history: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, training and held-out, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ["loss", "accuracy"]):
        ax.plot(epochs, [h.get(key) for h in history], label="training")
        ax.plot(epochs, [h.get(f"val_{key}") for h in history], label="held out")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
