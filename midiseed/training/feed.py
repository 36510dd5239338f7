"""What `fit()` is fed: batch number g of training, and validation, as Keras datasets.

`TrainBatches.batch(g)` is a pure function of g (and of the loops found so far with --anti-loop),
so one process and many workers feed Keras the same way: a `keras.utils.PyDataset` here, or
tf.data under multi-worker training (`distribute.worker_dataset`).
"""

from __future__ import annotations

import numpy as np

from midiseed.training import loops
from midiseed.training.windows import PITCH_IDS, Windows, random_transpose


class TrainBatches:
    """Training batches: windows of the store (`Windows`), plus with anti_loop > 0 that share of
    each batch again as repeated stretches (DITTO, `loops`), half of them from the loops the
    model's own greedy decoding fell into once `loops.loop_finder` has found some (`own`)."""

    def __init__(
        self,
        windows: Windows,
        anti_loop: float = 0.0,
        first_duration: int = PITCH_IDS,
        replicas: int = 1,
    ) -> None:
        self.windows, self.pieces = windows, windows.pieces
        self.first_duration = first_duration
        extra = round(windows.batch_size * anti_loop / (1 - anti_loop)) if anti_loop > 0 else 0
        # every batch must split evenly over the replicas
        self.extra = max(replicas, extra - extra % replicas) if extra else 0
        self.own: list[tuple[np.ndarray, np.ndarray]] = []

    @property
    def windows_per_batch(self) -> int:
        return self.windows.batch_size + self.extra

    def batch(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and packed targets of batch number g of the run."""
        x, y = self.windows.batch(g)
        if not self.extra:
            return x, y
        rng = np.random.default_rng((self.windows.seed, 2, g))
        own = self.extra // 2 if self.own else 0
        xr, yr = loops.repeated_windows(
            self.pieces, self.extra - own, self.windows.seq_len, rng, self.first_duration
        )
        if self.windows.transpose_range is not None:  # the music transposed as the rest of the batch
            full = random_transpose(
                np.concatenate([xr[:, :1], yr[..., 0]], axis=1), *self.windows.transpose_range, rng
            )
            xr, yr[..., 0] = full[:, :-1], full[:, 1:]
        x, y = np.concatenate([x, xr]), np.concatenate([y, yr])
        if own:
            xo, yo = loops.own_windows(self.own, own, self.windows.seq_len, rng)
            x, y = np.concatenate([x, xo]), np.concatenate([y, yo])
        return x, y


def keras_train(batches: TrainBatches, steps: int):
    """A PyDataset of `steps` batches an epoch; its `epoch` attribute (set by the run's callback at
    each epoch's start) says which: epoch e is batches e*steps .. e*steps + steps - 1."""
    import keras

    class Train(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def __len__(self) -> int:
            return steps

        def __getitem__(self, i: int):
            return batches.batch(self.epoch * steps + i)

    return Train()


def keras_validation(windows: Windows, replicas: int = 1):
    """A PyDataset of one pass over the validation windows, in order; the last batch is short, cut
    to a multiple of the replicas (each replica must get the same number of windows)."""
    import keras

    whole = windows.count - windows.count % replicas if windows.count >= replicas else windows.count

    class Validation(keras.utils.PyDataset):
        def __len__(self) -> int:
            return max(1, -(-whole // windows.batch_size))

        def __getitem__(self, i: int):
            x, y = windows.ordered_batch(i)
            keep = min(len(x), whole - i * windows.batch_size)
            return x[:keep], y[:keep]

    return Validation()
