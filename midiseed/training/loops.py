"""Training against greedy loops: DITTO ("Learning to Break the Loop", Xu et al., NeurIPS 2022).

A next-event model trained by cross-entropy alone reinforces itself: once a short pattern has
repeated in its context, repeating it again gets likelier each time, and greedy decoding falls
into a loop it never leaves (the seed project's users' "one note repeated", "very repetitive").
DITTO shows the model a short stretch of real music repeated end to end and, for each token of
the second and later copies, asks that its probability be `lam` times what it was at the same
place one copy earlier (loss ``-log(1 - |p_n - lam * p_{n-1}|)``, the earlier copy's probability
held constant), so repeating grows less likely the more it has happened. Here the copies follow
the music that led to the stretch in its piece, as a loop begins in generation, and the windows
are mixed with ordinary ones trained by cross-entropy.

Targets travel packed as (B, T, 2) integers: the next token, and what to train at that position:
`MLE` (cross-entropy), `IGNORE`, or the index of the same position one copy earlier (DITTO).
"""

from __future__ import annotations

import numpy as np

MLE = -1
IGNORE = -2
MAX_LOOP_EVENTS = 8  # stretches of 1..8 events, the loop periods `midiseed evaluate` counts


def event_ends(tokens: np.ndarray, offsets: np.ndarray, first_duration: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of every event's closing duration token, and the piece each belongs to."""
    ends = np.flatnonzero(tokens >= first_duration)
    return ends, np.searchsorted(offsets, ends, side="right") - 1


def pack(targets: np.ndarray, what: np.ndarray | None = None) -> np.ndarray:
    """(B, T) next tokens (+ what to train at each) -> (B, T, 2); plain cross-entropy by default."""
    what = np.full(targets.shape, MLE, dtype=np.int32) if what is None else what
    return np.stack([targets.astype(np.int32), what.astype(np.int32)], axis=-1)


def repeated_windows(
    tokens: np.ndarray,
    ends: np.ndarray,
    piece_of: np.ndarray,
    starts: np.ndarray,
    count: int,
    seq_len: int,
    rng: np.random.Generator,
    first_duration: int,
    max_events: int = MAX_LOOP_EVENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """`count` windows, each the music of one piece up to a stretch of 1..max_events events, then
    that stretch repeated to fill seq_len + 1 tokens: the way a greedy loop begins, after real
    music. `starts` are the pieces' first token indices. Returns inputs (count, seq_len) and packed
    targets (count, seq_len, 2): DITTO from the second copy on, nothing trained before it.

    A held pitch in the stretch's first event that the last event does not sound is written as
    struck, so every copy is the same valid spelling and the copies join like real music.
    """
    x = np.zeros((count, seq_len), dtype=np.int32)
    y = np.zeros((count, seq_len, 2), dtype=np.int32)
    n = len(ends)
    t = np.arange(seq_len)
    for row in range(count):
        for _ in range(100):  # a stretch inside one piece; almost always the first try
            k = int(rng.integers(1, max_events + 1))
            j = int(rng.integers(0, max(1, n - k)))  # events j+1..j+k, closed by ends[j+1..j+k]
            if j + k < n and piece_of[j] == piece_of[j + k]:
                break
        begin = ends[j] + 1
        seg = tokens[begin : ends[j + k] + 1].copy()
        last = {int(tok) % 128 for tok in seg[ends[j + k - 1] + 1 - begin : -1]}
        for i in range(ends[j + 1] - begin):  # the first event's pitches
            if 128 <= seg[i] < first_duration and int(seg[i]) - 128 not in last:
                seg[i] -= 128
        period = len(seg)
        room = max(0, min(seq_len // 2, seq_len + 1 - 2 * period))  # leave room for two copies
        lead = min(int(rng.integers(0, room + 1)), begin - starts[piece_of[j + k]])
        window = np.concatenate([tokens[begin - lead : begin], np.resize(seg, seq_len + 1 - lead)])
        x[row] = window[:-1]
        y[row, :, 0] = window[1:]
        second = lead + period - 1  # target index of the second copy's first token
        y[row, :, 1] = np.where((t >= second) & (t >= period), t - period, IGNORE)
    return x, y


def _register():
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="midiseed")
    class LoopLoss(keras.losses.Loss):
        """Cross-entropy where the packed targets say MLE, DITTO where they point one copy back."""

        def __init__(self, lam: float = 0.5, name: str = "loop_loss", **kwargs) -> None:
            super().__init__(name=name, **kwargs)
            self.lam = lam

        def call(self, y_true, y_pred):
            target = ops.cast(y_true[..., 0], "int32")
            what = ops.cast(y_true[..., 1], "int32")
            logp = ops.log_softmax(y_pred, axis=-1)
            lp = ops.squeeze(ops.take_along_axis(logp, target[..., None], axis=-1), -1)
            p = ops.exp(lp)
            before = ops.stop_gradient(ops.take_along_axis(p, ops.maximum(what, 0), axis=1))
            ditto = -ops.log(ops.maximum(1.0 - ops.abs(p - self.lam * before), 1e-6))
            return ops.where(what == MLE, -lp, ops.where(what >= 0, ditto, ops.zeros_like(lp)))

        def get_config(self) -> dict:
            return {**super().get_config(), "lam": self.lam}

    @keras.saving.register_keras_serializable(package="midiseed")
    def accuracy(y_true, y_pred):
        """Top-1 accuracy over the positions trained by cross-entropy."""
        target = ops.cast(y_true[..., 0], "int32")
        mask = ops.cast(ops.equal(ops.cast(y_true[..., 1], "int32"), MLE), "float32")
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), target), "float32")
        return ops.sum(hit * mask) / ops.maximum(ops.sum(mask), 1.0)

    return LoopLoss, accuracy


_objects: tuple | None = None


def loss_and_metric(lam: float = 0.5):
    """(loss, accuracy metric) for packed targets; registered so saved runs load again."""
    global _objects
    if _objects is None:
        _objects = _register()
    loss_cls, accuracy = _objects
    return loss_cls(lam), accuracy
