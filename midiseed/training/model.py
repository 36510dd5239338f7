"""The network: embedding -> stacked LSTM (batch norm, dropout) -> dense -> next-event logits.

Backend-agnostic Keras 3: the same code trains under TensorFlow (the default), JAX or PyTorch.
`build_model(cfg, stateful=True)` builds the export form: the same layers (same names, so the
trained weights load by name) with every LSTM's h and c as explicit inputs and outputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from midiseed.errors import BadValue

PRESETS: dict[str, dict] = {
    # the project we grew from: 3 x LSTM(512), dense 256, 100-event windows
    "seed": {
        "embed_dim": 64,
        "lstm_units": (512, 512, 512),
        "dense_units": 256,
        "dropout": 0.3,
        "seq_len": 100,
    },
    # what we ship: sized so one step stays far under a millisecond on a 2-core CPU (MODEL_CARD.md)
    "default": {
        "embed_dim": 64,
        "lstm_units": (256, 256),
        "dense_units": 256,
        "dropout": 0.3,
        "seq_len": 128,
    },
    # issue 11's larger candidates, chosen between by held-out NLL per collection against step time
    # (MODEL_CARD.md); each keeps the default's embedding, dense layer and window
    "wide": {
        "embed_dim": 64,
        "lstm_units": (384, 384),
        "dense_units": 256,
        "dropout": 0.3,
        "seq_len": 128,
    },
    "large": {
        "embed_dim": 64,
        "lstm_units": (512, 512),
        "dense_units": 256,
        "dropout": 0.3,
        "seq_len": 128,
    },
    # for tests: trains in seconds, still two stacked layers so state handling is exercised
    "tiny": {"embed_dim": 16, "lstm_units": (32, 32), "dense_units": 32, "dropout": 0.1, "seq_len": 32},
}


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one network; saved in the run dir and the model file."""

    vocab_size: int  # number of distinct events (output classes)
    embed_dim: int = 64  # width of each event's learned vector
    lstm_units: tuple[int, ...] = (256, 256)  # one entry per stacked LSTM layer
    dense_units: int = 256  # the hidden dense layer before the output
    dropout: float = 0.3  # after every LSTM and the dense layer (never recurrent: keeps cuDNN)
    seq_len: int = 64  # training window length in events

    def to_dict(self) -> dict:
        return {**asdict(self), "lstm_units": list(self.lstm_units)}

    @staticmethod
    def from_dict(d: dict) -> ModelConfig:
        return ModelConfig(**{**d, "lstm_units": tuple(d["lstm_units"])})


def preset_config(preset: str, vocab_size: int, **overrides) -> ModelConfig:
    """The ModelConfig of a named preset, with explicit overrides (None means keep)."""
    if preset not in PRESETS:
        raise BadValue(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = ModelConfig(vocab_size=vocab_size, **PRESETS[preset])
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def build_model(cfg: ModelConfig, stateful: bool = False):
    """A Keras model. Training form: tokens (B, T) -> logits (B, T, V).
    Stateful form: [tokens, h1, c1, h2, c2, ...] -> [logits, h1', c1', ...]."""
    import keras
    from keras import layers

    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    inputs = [tokens]
    states_out = []
    x = layers.Embedding(cfg.vocab_size, cfg.embed_dim, name="embed")(tokens)
    for i, units in enumerate(cfg.lstm_units):
        lstm = layers.LSTM(units, return_sequences=True, return_state=stateful, name=f"lstm{i}")
        if stateful:
            h = keras.Input(shape=(units,), name=f"h{i}")
            c = keras.Input(shape=(units,), name=f"c{i}")
            inputs += [h, c]
            x, h_out, c_out = lstm(x, initial_state=[h, c])
            states_out += [h_out, c_out]
        else:
            x = lstm(x)
        x = layers.BatchNormalization(name=f"norm{i}")(x)
        x = layers.Dropout(cfg.dropout, name=f"drop{i}")(x)
    x = layers.Dense(cfg.dense_units, activation="relu", name="dense")(x)
    x = layers.BatchNormalization(name="norm_dense")(x)
    x = layers.Dropout(cfg.dropout, name="drop_dense")(x)
    logits = layers.Dense(cfg.vocab_size, name="logits")(x)
    if stateful:
        return keras.Model(inputs, [logits, *states_out], name="midiseed_step")
    return keras.Model(tokens, logits, name="midiseed")


def copy_weights(src, dst) -> None:
    """Copy weights layer by layer, by name (training form -> stateful form)."""
    for layer in dst.layers:
        if layer.weights:
            layer.set_weights(src.get_layer(layer.name).get_weights())


def weight_count(cfg: ModelConfig) -> int:
    """Number of parameters, without building the model."""
    n = cfg.vocab_size * cfg.embed_dim
    width = cfg.embed_dim
    for units in cfg.lstm_units:
        n += 4 * units * (width + units + 1) + 4 * units  # kernels, bias, batch norm
        width = units
    n += width * cfg.dense_units + cfg.dense_units + 4 * cfg.dense_units
    n += cfg.dense_units * cfg.vocab_size + cfg.vocab_size
    return n
