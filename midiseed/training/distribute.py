"""Data-parallel training on an existing engine; the only module that touches tf.distribute.

- Several machines: `tf.distribute.MultiWorkerMirroredStrategy`, configured from `TF_CONFIG`
  (the same command on every machine, each with its own task index). Each worker reads its own
  files of the token store (`worker_share`) and feeds them through
  `distribute_datasets_from_function`, so nothing is auto-sharded; gradients are all-reduced
  every step, so every worker holds the same weights. No parameter server.
- One machine, several devices: `tf.distribute.MirroredStrategy` (--devices), or
  `keras.distribution.DataParallel` under JAX.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from midiseed.errors import BadValue

log = logging.getLogger(__name__)


@dataclass
class Cluster:
    """Where this process trains: how many replicas in all, how many workers, which one it is."""

    replicas: int = 1  # model copies kept in sync (all devices of all workers)
    workers: int = 1  # processes (machines) in the cluster
    index: int = 0  # this worker's number, 0 = the chief
    strategy: object | None = None  # the tf.distribute strategy, when there is one

    @property
    def multi_worker(self) -> bool:
        return self.workers > 1

    def scope(self):
        """The context to build and compile the model in."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def any_worker(self, mine: bool) -> bool:
        """Whether any worker says yes: a decision every worker must take together. Under
        multi-worker training this is a collective all-reduce, so every worker must call it at the
        same point (once per epoch end); otherwise it is `mine`."""
        if not self.multi_worker:
            return mine
        import tensorflow as tf

        said = self.strategy.run(lambda: tf.constant(1.0 if mine else 0.0))
        return bool(self.strategy.reduce(tf.distribute.ReduceOp.SUM, said, axis=None).numpy() > 0)


def tf_config() -> tuple[int, int] | None:
    """(workers, this worker's index) from TF_CONFIG, or None when it names no cluster of several."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        kind, number = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as err:
        raise BadValue(f"TF_CONFIG must be JSON with cluster.worker and task.type/index: {err}") from None
    if kind not in ("chief", "worker") or number >= len(cluster.get(kind, [])) or number < 0:
        raise BadValue(f"TF_CONFIG task {kind} {number} is not in its cluster")
    total = len(chiefs) + len(workers)
    return (total, number if kind == "chief" else len(chiefs) + number) if total > 1 else None


def setup(devices: str = "auto") -> Cluster:
    """The cluster this process trains in; call before anything else starts TensorFlow."""
    import keras

    backend = keras.backend.backend()
    multi = tf_config()
    if multi is not None:
        if backend != "tensorflow":
            raise BadValue(f"TF_CONFIG multi-worker training needs KERAS_BACKEND=tensorflow, not {backend}")
        import tensorflow as tf

        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        workers, index = multi
        log.info(
            "worker %d of %d: data-parallel over %d replicas", index, workers, strategy.num_replicas_in_sync
        )
        return Cluster(strategy.num_replicas_in_sync, workers, index, strategy)
    if backend == "tensorflow":
        import tensorflow as tf

        if devices == "auto":
            gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
            chosen = gpus if len(gpus) > 1 else []
        else:
            chosen = [d.strip() for d in devices.split(",") if d.strip()]
            here = [d.name.split("device:")[-1] for d in tf.config.list_logical_devices()]  # CPU:0, GPU:0
            missing = [c for c in chosen if c.split("device:")[-1].lstrip("/").upper() not in here]
            if missing:
                raise BadValue(
                    f"--devices {devices}: no {', '.join(missing)} here (there is {', '.join(here)})"
                )
        if len(chosen) > 1:
            strategy = tf.distribute.MirroredStrategy(chosen)
            log.info(
                "data-parallel training on %d devices: %s", strategy.num_replicas_in_sync, ", ".join(chosen)
            )
            return Cluster(strategy.num_replicas_in_sync, strategy=strategy)
        gpu = tf.config.list_logical_devices("GPU")
        log.info("training on %s", chosen[0] if chosen else ("GPU" if gpu else "CPU"))
    elif backend == "jax":
        import jax

        found = jax.devices()
        if len(found) > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=found))
            log.info("data-parallel training on %d %s devices", len(found), found[0].platform)
            return Cluster(len(found))
        log.info("training on %s", found[0].platform)
    return Cluster()


def split_cpu(n: int) -> None:
    """Present the CPU as n logical devices (TensorFlow only; before TensorFlow starts)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
    )


def worker_share(shards: list[int], shard_count: int, workers: int, index: int) -> list[int]:
    """Which of the training files (given by the shard each lives in) worker `index` reads: those of
    its own shards (shard % workers == index), so a machine needs only its shards of the store;
    by file (file number % workers) when the store has fewer shards than workers, or when a shard
    rule would leave some worker without files."""
    by_shard = [[i for i, s in enumerate(shards) if s % workers == w] for w in range(workers)]
    if shard_count >= workers and all(by_shard):
        return by_shard[index]
    return [i for i in range(len(shards)) if i % workers == index]


def worker_dataset(cluster: Cluster, batch: Callable[[int], tuple], first: int, seq_len: int, cycle: int = 0):
    """This worker's input for `fit`: batch(first), batch(first + 1), ... (each one replica's
    batch), endlessly; with `cycle` > 0, batch(first .. first + cycle - 1) over and over
    (validation: the same windows every epoch)."""
    import tensorflow as tf

    spec = (tf.TensorSpec((None, seq_len), tf.int32), tf.TensorSpec((None, seq_len, 2), tf.int32))

    def batches():
        n = 0
        while True:
            yield batch(first + (n % cycle if cycle else n))
            n += 1

    def per_worker(_context):
        dataset = tf.data.Dataset.from_generator(batches, output_signature=spec)
        options = tf.data.Options()
        # each worker already reads its own files: sharding again would throw batches away
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return dataset.with_options(options).prefetch(2)

    return cluster.strategy.distribute_datasets_from_function(per_worker)


def prepare_model(cluster: Cluster, model, example: tuple[np.ndarray, np.ndarray]) -> None:
    """Make a model ready for fit() under MultiWorkerMirroredStrategy: synchronised batch norm, and
    two work-arounds Keras 3 (3.15, TF 2.21) needs there (keras-team/keras#20585,
    tensorflow/tensorflow#72388), applied to this model object only:
    - fit() first builds the model from a MEAN-reduce of the first distributed batch, which fails
      for an (x, y) pair: build it from a local batch of the same shapes instead;
    - it then MEAN-reduces each step's scalar metrics along axis 0, which scalars lack: give them
      that axis (shape (1,)); the reduced figures are the same on every worker."""
    if not cluster.multi_worker:
        return
    import keras
    from keras import ops

    for layer in model.layers:
        # batch statistics over the whole global batch, so every worker keeps the same moving
        # mean and variance (as one machine would with that batch); saved in the model's config,
        # which TensorFlow (export's backend) loads
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True

    build = model._maybe_symbolic_build
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: build(data_batch=example)

    def with_axis(step):
        def wrapped(data):
            return {k: ops.reshape(v, (1,)) for k, v in step(data).items()}

        return wrapped

    model.train_step = with_axis(model.train_step)
    model.test_step = with_axis(model.test_step)
