"""`midiseed train`: a token store (or a MIDI folder, tokenised first) -> a run directory.

`train()` reads top to bottom in four stages:

1. `prepare`: open the store, split it by file (train / validation / test), find the windows,
   write the run directory's description (`RunDir`: every file name lives there);
2. `build`: the network, new, resumed from its last checkpoint, or started from --init's weights;
3. `fit`: Keras fit, fed batch by batch from the store's shard files (`feed`, `windows`); after each
   epoch `RunKeeper` saves the state, the checkpoints and the history, and stops early;
4. `finish`: the kept weights become model.keras, scored on validation and test (metrics.json).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from midiseed.errors import BadValue, output_folder
from midiseed.runtime.codec import Codec
from midiseed.training import distribute, feed, loops, store
from midiseed.training.corpus import DataError, require_midi_files
from midiseed.training.losses import loss_and_metric
from midiseed.training.model import ModelConfig, build_model, preset_config
from midiseed.training.rundir import RunDir, RunKeeper, RunState
from midiseed.training.split import Split, split_files
from midiseed.training.windows import Pieces, Windows, transposition_bounds

log = logging.getLogger(__name__)

LOOP_SEARCH_EVERY = 50  # batches between looks for the model's own greedy loops (--anti-loop)
RESUMABLE = ("epochs", "keep", "steps_per_epoch", "time_limit")  # options a resumed run may change


@dataclass
class TrainOptions:
    """Everything `midiseed train` takes; saved in config.json."""

    data: str  # a token store, or a MIDI folder (tokenised into its cached store first)
    out: str
    preset: str = "default"
    epochs: int = 150
    batch_size: int = 128  # windows a step, over all replicas and workers
    seq_len: int | None = None  # None: the preset's
    patience: int = 10  # epochs without a better validation loss before stopping
    val_fraction: float = 0.1  # share of files for validation (every decision is made on it)
    test_fraction: float = 0.1  # share of files for test (recorded, never trained or decided on)
    transpose: str = "-5..6"  # each training window moves by a random shift in this range
    stride: int | None = None  # tokens between window starts; None: seq_len // 4
    steps_per_epoch: int | None = None  # None: one pass over the training windows
    val_windows: int = 20_000  # most validation (and test) windows scored, evenly spread
    learning_rate: float = 1e-3
    include_drums: bool = False  # when tokenising a MIDI folder
    seed: int = 0
    devices: str = "auto"  # auto, or a comma list such as "CPU:0,CPU:1" for data-parallel training
    workers: int | None = None  # tokenising processes for a MIDI folder; None: one per core
    anti_loop: float = 0.0  # extra share of each batch made of short stretches repeated (DITTO, loops.py)
    init: str | None = None  # a run dir whose model.keras weights this run starts from (fine-tuning)
    loop_period: int = loops.MAX_LOOP_EVENTS  # longest own greedy loop (events) --anti-loop trains against
    keep: str = "best"  # which epoch becomes model.keras: best validation loss, or the last one
    time_limit: float | None = None  # minutes this session may train; it stops at the first epoch end after


@dataclass
class Prepared:
    """What `prepare` found: the data as windows, the network's shape, where the run stands."""

    run: RunDir
    state: RunState
    codec: Codec
    cfg: ModelConfig
    split: Split
    train: Windows  # this worker's share of the training files
    validation: Windows
    test: Windows | None
    steps: int  # batches an epoch
    summary: dict


def check_options(opts: TrainOptions) -> None:
    """Refuse values no run can use (BadValue, one line)."""
    if opts.epochs < 1 or opts.batch_size < 1 or opts.patience < 1:
        raise BadValue("epochs, batch size and patience must each be at least 1")
    if opts.keep not in ("best", "last"):
        raise BadValue(f"keep must be best or last, got {opts.keep!r}")
    if not 1 <= opts.loop_period <= 64:
        raise BadValue(f"loop period must lie in 1..64 events, got {opts.loop_period}")
    if not 0 <= opts.anti_loop < 1:
        raise BadValue(f"anti-loop share must be at least 0 and below 1, got {opts.anti_loop}")
    if opts.steps_per_epoch is not None and opts.steps_per_epoch < 1:
        raise BadValue(f"steps per epoch must be at least 1, got {opts.steps_per_epoch}")
    if opts.time_limit is not None and opts.time_limit <= 0:
        raise BadValue(f"time limit must be above 0 minutes, got {opts.time_limit}")
    if opts.val_windows < 1 or opts.seed < 0:
        raise BadValue("validation windows must be at least 1 and the seed at least 0")
    transposition_bounds(opts.transpose)


def train(opts: TrainOptions) -> dict:
    """Train (or resume) a run; returns the final metrics. Raises UserError on bad input."""
    check_options(opts)
    cluster = distribute.setup(opts.devices)  # first: a multi-worker strategy must start TensorFlow
    prep = prepare(opts, cluster)
    model, batches = build(prep, opts, cluster)
    fit(prep, opts, cluster, model, batches)
    return finish(prep, opts)


def open_data(opts: TrainOptions) -> store.TokenStore:
    """The token store --data names, or the cached store of the MIDI folder it names (tokenised
    now: only files new or changed since the last time are read)."""
    data = Path(opts.data)
    if not store.is_store(data):
        require_midi_files(data, " and is not a token store")  # a missing path or a file: DataError too
        target = store.store_for(data)
        log.info("tokenising %s into %s", data, target)
        report = store.tokenize(data, target, workers=opts.workers, include_drums=opts.include_drums)
        log.info("%s", report.summary())
        data = target
    opened = store.TokenStore.open(data)
    if opts.include_drums and not opened.include_drums:
        raise BadValue(f"token store {data} was made without drums; tokenise the folder again with drums")
    return opened


def prepare(opts: TrainOptions, cluster: distribute.Cluster) -> Prepared:
    """Open and split the data, find the windows, check --init, write the run's description."""
    output_folder(opts.out, "--out")  # before the data is read (and, for a MIDI folder, tokenised)
    run = RunDir(opts.out)
    if cluster.index > 0:  # every worker keeps its own state and checkpoints (the chief's is the run)
        run = run.worker(cluster.index)
    state = RunState()
    tokens = open_data(opts)
    codec = tokens.codec
    if run.has_state():
        saved = run.read_config()
        free = {k: getattr(opts, k) for k in RESUMABLE}
        then, now = asdict(TrainOptions(**saved["options"])) | free, asdict(opts) | free
        if then != now:
            changed = ", ".join(f"{k} {then[k]!r} (now {now[k]!r})" for k in now if then.get(k) != now[k])
            raise BadValue(
                f"{run.root} holds a run with other settings: {changed}; use another --out or delete it"
            )
        state = run.read_state()
        if run.read_codec().keys != codec.keys:
            raise BadValue(f"{run.root} was trained with another codec than the store {tokens.root}")
        log.info("resuming %s after epoch %d", run.root, state.epoch)
    if not tokens.files:
        raise DataError(f"no readable MIDI file in {opts.data} ({len(tokens.skipped)} skipped)")
    if len(tokens.files) < 2:
        raise DataError(f"{opts.data} has only one readable MIDI file; a validation split needs two or more")
    split = split_files([f.path for f in tokens.files], opts.val_fraction, opts.test_fraction)
    cfg = preset_config(opts.preset, len(codec), seq_len=opts.seq_len)
    if opts.init:
        check_init(Path(opts.init), cfg, codec, split)

    train_windows, held, total_windows = make_windows(opts, cluster, tokens, split, cfg)
    per_replica = max(1, opts.batch_size // cluster.replicas)
    steps = opts.steps_per_epoch or max(1, -(-total_windows // (per_replica * cluster.replicas)))
    summary = data_summary(opts, tokens, split, total_windows, steps)
    log.info(
        "data: %d files (%d skipped): %d train, %d validation, %d test; %d windows, %d steps an epoch",
        len(tokens.files),
        len(tokens.skipped),
        len(split.train),
        len(split.validation),
        len(split.test),
        total_windows,
        steps,
    )
    run.create()
    run.write_codec(codec)
    run.write_split(split.to_json())
    run.write_config(
        {
            "options": asdict(opts),
            "preset": opts.preset,
            "model": cfg.to_dict(),
            "data": summary,
            "backend": _backend(),
        }
    )
    return Prepared(
        run, state, codec, cfg, split, train_windows, held["validation"], held.get("test"), steps, summary
    )


def _backend() -> str:
    import keras

    return keras.backend.backend()


def make_windows(
    opts: TrainOptions, cluster: distribute.Cluster, tokens: store.TokenStore, split: Split, cfg: ModelConfig
) -> tuple[Windows, dict[str, Windows], int]:
    """(this worker's training windows, validation and test windows, training windows of all
    workers). DataError when a side has no window (every file shorter than one)."""
    per_replica = max(1, opts.batch_size // cluster.replicas)
    # one replica's batch under multi-worker training (each worker feeds its own); else the whole batch
    batch = per_replica if cluster.multi_worker else per_replica * cluster.replicas
    stride = opts.stride or max(1, cfg.seq_len // 4)
    train_pieces = Pieces.from_store(tokens, split.train)
    total_windows = len(Windows(train_pieces, cfg.seq_len, stride, batch))
    if cluster.multi_worker:
        shards = [int(s) for s in train_pieces.shard]
        train_pieces = train_pieces.subset(
            distribute.worker_share(shards, tokens.shard_count, cluster.workers, cluster.index)
        )
        log.info(
            "worker %d reads %d of %d training files", cluster.index, len(train_pieces), len(split.train)
        )
        log.debug("worker %d reads %s", cluster.index, json.dumps(train_pieces.names))
    shifts = transposition_bounds(opts.transpose)
    train_windows = Windows(train_pieces, cfg.seq_len, stride, batch, opts.seed, True, shifts)
    held = {  # validation and test: in order, untransposed, half-overlapping, at most val_windows
        side: Windows(
            Pieces.from_store(tokens, split.side(side)),
            cfg.seq_len,
            max(1, cfg.seq_len // 2),
            batch,
            shuffle=False,
            limit=opts.val_windows,
        )
        for side in ("validation", "test")
        if split.side(side)
    }
    for side, windows in [("training", train_windows), ("validation", held["validation"])]:
        if len(windows) == 0:
            longest = int(windows.pieces.length.max(initial=0))
            raise DataError(
                f"seq_len {cfg.seq_len} is longer than every {side} piece (longest has {longest} tokens); "
                "use a smaller --seq-len"
            )
    return train_windows, held, total_windows


def data_summary(
    opts: TrainOptions, tokens: store.TokenStore, split: Split, windows: int, steps: int
) -> dict:
    """config.json's "data": what trained the run, per side and per collection."""
    by_path = {f.path: f for f in tokens.files}
    collections: dict[str, dict[str, int]] = {}
    for f in tokens.files:
        c = collections.setdefault(f.collection or ".", {"files": 0, "tokens": 0, "train_files": 0})
        c["files"] += 1
        c["tokens"] += f.tokens
    for path in split.train:
        collections[by_path[path].collection or "."]["train_files"] += 1
    return {
        "data": str(opts.data),
        "store": str(tokens.root),
        "files_read": len(tokens.files),
        "files_skipped": len(tokens.skipped),
        "files_cut": len(tokens.cuts),
        "tokens": tokens.total_tokens,
        **{f"{side}_files": len(split.side(side)) for side in ("train", "validation", "test")},
        **{
            f"{side}_tokens": sum(by_path[p].tokens for p in split.side(side))
            for side in ("train", "validation", "test")
        },
        "collections": collections,
        "train_windows": windows,
        "steps_per_epoch": steps,
        "transpose": opts.transpose,
        "include_drums": tokens.include_drums,
    }


def build(prep: Prepared, opts: TrainOptions, cluster: distribute.Cluster):
    """(compiled model, training batches): resumed from checkpoints/last.keras, or new (from --init's
    weights when given), built in the cluster's scope so its variables are mirrored."""
    import keras

    keras.utils.set_random_seed(opts.seed + prep.state.epoch)
    loss_fn, accuracy = loss_and_metric()  # registers them, so checkpoints load
    # each worker's batches are one replica's under multi-worker training; else split over replicas
    split_over = 1 if cluster.multi_worker else cluster.replicas
    batches = feed.TrainBatches(prep.train, opts.anti_loop, prep.codec.duration(1), split_over)
    with cluster.scope():
        if prep.state.epoch > 0:
            model = keras.models.load_model(prep.run.checkpoint("last"))
        else:
            model = build_model(prep.cfg)
            if opts.init:
                start = keras.models.load_model(RunDir(opts.init).model_path, compile=False)
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
    distribute.prepare_model(cluster, model, batches.batch(0))
    return model, batches


def fit(
    prep: Prepared, opts: TrainOptions, cluster: distribute.Cluster, model, batches: feed.TrainBatches
) -> None:
    """Keras fit from the epoch the run stands at, until --epochs or early stopping."""
    state = prep.state
    if state.epoch >= opts.epochs or state.wait >= opts.patience:
        log.info(
            "%s already finished training (epoch %d); writing its final model", prep.run.root, state.epoch
        )
        return
    windows_per_step = batches.windows_per_batch * (cluster.replicas if cluster.multi_worker else 1)
    keeper = RunKeeper(prep.run, state, opts.patience, prep.steps * windows_per_step * prep.cfg.seq_len)
    if opts.time_limit is not None:
        keeper.stop_at = time.monotonic() + opts.time_limit * 60
    keeper.any_worker = cluster.any_worker
    if cluster.multi_worker:
        local = cluster.replicas // cluster.workers  # replicas on this worker, fed in turn
        train_data = distribute.worker_dataset(
            cluster, batches.batch, state.epoch * prep.steps * local, prep.cfg.seq_len
        )
        val_steps = max(1, -(-prep.validation.batches_per_pass() // cluster.replicas))
        val_data = distribute.worker_dataset(
            cluster,
            lambda i: prep.validation.batch(i * cluster.workers + cluster.index),
            0,
            prep.cfg.seq_len,
            cycle=val_steps * local,
        )
        extra = {"steps_per_epoch": prep.steps, "validation_steps": val_steps}
    else:
        train_data, val_data, extra = (
            feed.keras_train(batches, prep.steps),
            feed.keras_validation(prep.validation, cluster.replicas),
            {},
        )
        keeper.feeds = train_data
    callbacks = [keeper.callback()]
    if opts.anti_loop:  # first: its figure goes into the epoch's logs before RunKeeper writes them
        finder = loops.loop_finder(
            batches, prep.cfg, prep.codec, opts.seed, LOOP_SEARCH_EVERY, opts.loop_period
        )
        callbacks.insert(0, finder)
    model.fit(
        train_data,
        validation_data=val_data,
        epochs=opts.epochs,
        initial_epoch=state.epoch,
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
        **extra,
    )


def finish(prep: Prepared, opts: TrainOptions) -> dict:
    """The kept checkpoint becomes model.keras; its validation and test figures go to metrics.json."""
    import keras

    state = prep.state
    kept = keras.models.load_model(prep.run.checkpoint(opts.keep))  # outside any strategy: local
    prep.run.save_model(kept)
    loss, acc = kept.evaluate(feed.keras_validation(prep.validation), verbose=0)
    test = (
        kept.evaluate(feed.keras_validation(prep.test), verbose=0) if prep.test is not None else (None, None)
    )
    metrics = {
        "held_out_loss": float(loss),  # on the validation split (the name older readers know)
        "held_out_accuracy": float(acc),
        "test_loss": None if test[0] is None else float(test[0]),
        "test_accuracy": None if test[1] is None else float(test[1]),
        "best_epoch": state.best_epoch,
        "kept_epoch": state.best_epoch if opts.keep == "best" else state.epoch,
        "epochs_run": state.epoch,
        "train_tokens_per_second": state.tokens_per_second(),
        "vocab_size": len(prep.codec),
        "parameters": int(kept.count_params()),
    }
    prep.run.write_metrics(metrics)
    return metrics


def check_init(init: Path, cfg: ModelConfig, codec: Codec, split: Split) -> None:
    """A run to fine-tune from must hold the same network and codec, and must not have trained on
    any file this run validates or tests on (its figures would be flattering). Raises BadValue."""
    start = RunDir(init)
    try:
        config = start.read_config()
        init_codec = start.read_codec()
        init_split = Split.from_json(start.read_split())
    except (OSError, ValueError, KeyError) as err:
        raise BadValue(f"--init {init} is not a finished run directory: {err}") from None
    if not start.model_path.is_file():
        raise BadValue(f"--init {init} has no model.keras; finish its training first")
    if config.get("model") != cfg.to_dict():
        raise BadValue(f"--init {init} holds a different network ({config.get('preset')}) from this run's")
    if init_codec.keys != codec.keys or init_codec.grid != codec.grid:
        raise BadValue(f"--init {init} uses another token codec")
    leaked = set(init_split.train) & (set(split.validation) | set(split.test))
    if leaked:
        raise BadValue(
            f"--init {init} trained on {len(leaked)} of the files this run validates or tests on "
            f"(e.g. {sorted(leaked)[0]}); use the same data and --val-fraction/--test-fraction"
        )
