"""`midiseed export`: a run directory -> one self-describing, stateful ONNX file.

The trained (windowed) Keras model is rebuilt in its stateful form, weights copied by layer
name, and converted with tf2onnx: inputs are token ids (batch, time) plus every LSTM's h and c,
outputs the next-token logits for every position plus the new states. The LSTMs become ONNX
LSTM ops. The export then checks itself against Keras on held-out windows and refuses to write
a file that disagrees.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from midiseed.export.errors import ExportError
from midiseed.runtime.codec import Codec
from midiseed.training.model import ModelConfig, build_model, copy_weights
from midiseed.training.rundir import RunDir

log = logging.getLogger(__name__)
FP32_MAX_PROB_DIFF = 1e-4
INT8_MIN_AGREEMENT = 0.99
OPSET = 17


def check_run_dir(run: RunDir) -> dict:
    """The run's config.json, after checking every file the export needs is there."""
    if not run.root.is_dir():
        raise ExportError(f"run directory {run.root} does not exist")
    missing = run.missing()
    if missing:
        raise ExportError(f"run directory {run.root} is missing {', '.join(missing)} (did training finish?)")
    config = run.read_config()
    from midiseed.training.model import PRESETS

    if config.get("preset") not in PRESETS:
        raise ExportError(f"{run.config_path} names unknown preset {config.get('preset')!r}")
    return config


def heldout_windows(run: RunDir, codec: Codec, seq_len: int, count: int) -> np.ndarray:
    """Up to `count` windows of validation tokens (files training never saw), read from the run's
    token store; random tokens when the store is gone (parity still compares the two graphs)."""
    from midiseed.training import store
    from midiseed.training.split import Split
    from midiseed.training.windows import Pieces, Windows

    config = run.read_config()
    where = config.get("data", {}).get("store")
    tokens = None
    if where and store.is_store(Path(where)):
        opened = store.TokenStore.open(Path(where))
        names = Split.from_json(run.read_split()).validation
        windows = Windows(Pieces.from_store(opened, names), seq_len - 1, seq_len, count, shuffle=False)
        if len(windows) and opened.codec.keys == codec.keys:
            tokens = windows.tokens(np.arange(min(count, len(windows))))
    if tokens is None:
        log.warning("the run's token store %s is gone; checking parity on random tokens", where)
        tokens = np.random.default_rng(0).integers(0, len(codec), (count, seq_len)).astype(np.int32)
    return tokens


def convert(stateful, cfg: ModelConfig, path: Path) -> dict:
    """tf2onnx conversion of the stateful Keras model; returns the I/O names."""
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec([None, None], tf.int32, name="tokens")]
    states, states_out = [], []
    for i, units in enumerate(cfg.lstm_units):
        for kind in ("h", "c"):
            spec.append(tf.TensorSpec([None, units], tf.float32, name=f"{kind}{i}"))
            states.append(f"{kind}{i}")
            states_out.append(f"{kind}{i}_out")

    @tf.function(input_signature=spec)
    def step(*args):
        logits, *new = stateful(list(args), training=False)
        return {"logits": logits, **dict(zip(states_out, new))}

    tf2onnx.convert.from_function(step, input_signature=spec, opset=OPSET, output_path=str(path))
    return {"tokens": "tokens", "states": states, "logits": "logits", "states_out": states_out}


def node_types(path: Path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]


def write_metadata(path: Path, meta: dict[str, object]) -> None:
    """Set midiseed.* metadata_props on an ONNX file in place; every value is JSON."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key = f"midiseed.{key}"
        entry.value = json.dumps(value)
    model.doc_string = "midiseed: stateful LSTM over note events; see metadata_props midiseed.*"
    onnx.save(model, str(path))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def export(run: Path, out: Path, int8: bool = False, windows: int = 32) -> dict:
    """Export, check parity (and streaming == batch), write metadata. Returns the parity report."""
    run, out = RunDir(run), Path(out)
    config = check_run_dir(run)
    if out.is_dir():
        raise ExportError(f"output {out} is a folder; give a file name such as model.onnx")
    if not out.parent.exists():
        raise ExportError(f"output folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ExportError(f"output {out} is not writable")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ExportError("export runs under TensorFlow; unset KERAS_BACKEND or set it to tensorflow")
    codec = run.read_codec()
    cfg = ModelConfig.from_dict(config["model"])
    trained = keras.models.load_model(run.model_path, compile=False)
    stateful = build_model(cfg, stateful=True)
    copy_weights(trained, stateful)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        io = convert(stateful, cfg, fp32)
        ops = node_types(fp32)
        if "LSTM" not in ops or {"Loop", "Scan"} & set(ops):
            raise ExportError(f"conversion did not give ONNX LSTM ops (got {sorted(set(ops))})")
        final = fp32
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            final = Path(tmp) / "int8.onnx"
            quantize_dynamic(str(fp32), str(final), weight_type=QuantType.QInt8)
        metrics = run.read_metrics()
        meta = {
            "codec": json.loads(codec.to_json()),
            "model": cfg.to_dict(),
            "io": io,
            "preset": config["preset"],
            "seq_len": cfg.seq_len,
            "grid": asdict(codec.grid),
            "data": config["data"],
            "metrics": metrics,
            # which files trained it, validated it and test it: `evaluate` fits its baselines on
            # "train" and scores the others ("held_out" = "validation", for older readers)
            "split": run.read_split(),
            "quantization": "int8-dynamic" if int8 else "none",
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_metadata(final, meta)
        report = check_parity(trained, final, heldout_windows(run, codec, cfg.seq_len, windows), int8)
        report["convert_seconds"] = round(time.perf_counter() - t0, 2)
        meta["parity"] = report
        write_metadata(final, meta)
        os.replace(final, out)
    return report


def check_parity(trained, path: Path, windows: np.ndarray, int8: bool) -> dict:
    """onnxruntime vs Keras on held-out windows; streaming token by token vs one call. Raises on failure."""
    from midiseed.runtime.engine import Engine

    engine = Engine(path, provider="cpu")
    keras_p = _softmax(np.asarray(trained.predict(windows, verbose=0), dtype=np.float64))
    onnx_logits, _ = engine.run(windows, engine.zero_state(len(windows)))
    onnx_p = _softmax(onnx_logits.astype(np.float64))
    max_diff = float(np.abs(keras_p - onnx_p).max())
    agreement = float((keras_p.argmax(-1) == onnx_p.argmax(-1)).mean())
    # streaming: the first window fed one token at a time must match reading it in one call
    state = engine.zero_state()
    streamed = []
    for token in windows[0].tolist():
        logits, state = engine.step(token, state)
        streamed.append(logits)
    stream_p = _softmax(np.array(streamed, dtype=np.float64))
    stream_diff = float(np.abs(stream_p - onnx_p[0]).max())
    stream_agreement = float((stream_p.argmax(-1) == onnx_p[0].argmax(-1)).mean())
    report = {
        "windows": len(windows),
        "max_abs_prob_diff": max_diff,
        "top1_agreement": agreement,
        "stream_vs_batch_max_prob_diff": stream_diff,
        "stream_vs_batch_top1_agreement": stream_agreement,
    }
    # int8 quantises activations per call, so one call and many differ slightly: compare choices
    if int8 and stream_agreement < INT8_MIN_AGREEMENT:
        raise ExportError(f"int8 streaming and one-call choices agree on only {stream_agreement:.1%}")
    if not int8 and stream_diff > FP32_MAX_PROB_DIFF:
        raise ExportError(
            f"streaming and one-call results differ by {stream_diff:.2e} (limit {FP32_MAX_PROB_DIFF})"
        )
    if not int8 and max_diff > FP32_MAX_PROB_DIFF:
        raise ExportError(
            f"ONNX and Keras probabilities differ by {max_diff:.2e} (limit {FP32_MAX_PROB_DIFF})"
        )
    if int8 and agreement < INT8_MIN_AGREEMENT:
        raise ExportError(
            f"int8 model agrees with Keras on {agreement:.1%} of top-1 choices "
            f"(needs {INT8_MIN_AGREEMENT:.0%})"
        )
    return report
