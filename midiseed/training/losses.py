"""The loss and metric every run trains with, over packed targets.

Targets travel packed as (B, T, 2) integers: the next token, and what to train at that position:
`MLE` (cross-entropy), `IGNORE`, or the index of the same position one copy earlier (DITTO, the
anti-loop windows of `loops`). An ordinary batch is all `MLE` (`pack(targets)`), so the loss is
then plain next-token cross-entropy.

Backend-agnostic: `keras.ops` only, so the same code trains under TensorFlow and JAX.
"""

from __future__ import annotations

import numpy as np

MLE = -1
IGNORE = -2
LAMBDA = 0.5  # DITTO's target: each further repeat half as likely as the one before


def pack(targets: np.ndarray, what: np.ndarray | None = None) -> np.ndarray:
    """(B, T) next tokens (+ what to train at each) -> (B, T, 2); plain cross-entropy by default."""
    what = np.full(targets.shape, MLE, dtype=np.int32) if what is None else what
    return np.stack([targets.astype(np.int32), what.astype(np.int32)], axis=-1)


def _register():
    import keras
    from keras import ops

    # registered under the names the first runs saved them with, so every checkpoint loads
    @keras.saving.register_keras_serializable(package="midiseed")
    class LoopLoss(keras.losses.Loss):
        """Cross-entropy where the packed targets say MLE, DITTO where they point one copy back:
        ``-log(1 - |p_n - lam * p_{n-1}|)``, the earlier copy's probability held constant."""

        def __init__(self, lam: float = LAMBDA, name: str = "loop_loss", **kwargs) -> None:
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


def loss_and_metric(lam: float = LAMBDA):
    """(loss, accuracy metric) for packed targets; registered with Keras so saved runs load again."""
    global _objects
    if _objects is None:
        _objects = _register()
    loss_cls, accuracy = _objects
    return loss_cls(lam), accuracy
