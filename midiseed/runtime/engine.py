"""The model file at run time: one onnxruntime session over the stateful ONNX graph.

The one place that imports onnxruntime. The file describes itself in metadata_props (see
`midiseed.export.onnx_export`); a file without that description is refused with a clear reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from midiseed.errors import BadValue, UserError
from midiseed.runtime.codec import Codec, CodecError

log = logging.getLogger(__name__)
META = "midiseed."
REQUIRED = ("codec", "model", "io", "preset")
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# The shipped models travel inside the package (wheel or checkout alike), each reachable by name.
SHIPPED_MODELS = Path(str(files("midiseed") / "models"))
DEFAULT_MODEL = SHIPPED_MODELS / "default.onnx"
# onnxruntime and onnxruntime-gpu install the same module: with both, the CPU build may shadow the GPU
# one, and uninstalling one deletes files the other needs, hence --force-reinstall (README, "Install").
GPU_INSTALL = "pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps onnxruntime-gpu"


class ModelError(UserError):
    """A model file that cannot be used; the message names the file and why."""


@dataclass
class ModelInfo:
    """What a model file says about itself."""

    codec: Codec
    model: dict  # ModelConfig as a dict
    io: dict  # {"tokens": name, "states": [h0, c0, ...], "logits": name, "states_out": [...]}
    preset: str
    meta: dict  # every midiseed.* entry, parsed where it is JSON


def shipped_names() -> list[str]:
    """The names of the models shipped inside the package (`default`, ...), sorted."""
    return sorted(p.stem for p in SHIPPED_MODELS.glob("*.onnx"))


def model_path(model: str | Path | None) -> Path:
    """The model file for a --model value: None or "" = the shipped default; a path as it is; a bare
    name without a folder or suffix (`chorale`) = the shipped model of that name."""
    if model is None or str(model) == "":
        return DEFAULT_MODEL
    path = Path(model)
    # a file of that name in the working folder wins; otherwise a bare word can only mean a shipped name
    if path.exists() or len(path.parts) > 1 or path.suffix:
        return path
    shipped = SHIPPED_MODELS / f"{path.name}.onnx"
    if shipped.is_file():
        return shipped
    raise ModelError(
        f"no shipped model named {path.name!r}; shipped: {', '.join(shipped_names()) or 'none'} "
        "(or give the path of an .onnx file)"
    )


def read_info(path: str | Path | None) -> ModelInfo:
    """Metadata of a midiseed ONNX file, a shipped name or None for the default (without a session)."""
    import onnxruntime as ort

    path = model_path(path)
    sess = _session(path, ort.SessionOptions(), ["CPUExecutionProvider"])
    return _info(path, sess)


def _session(path: Path, options, providers):
    import onnxruntime as ort

    path = Path(path)
    if path.is_dir():
        raise ModelError(
            f"model file {path} is a folder (a training run is made a model by `midiseed export`)"
        )
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelError(f"{path} is not a usable ONNX model: {str(err).splitlines()[0][:200]}") from err


def _info(path: Path, sess) -> ModelInfo:
    raw = sess.get_modelmeta().custom_metadata_map
    missing = [k for k in REQUIRED if META + k not in raw]
    if missing:
        raise ModelError(
            f"{path} is not a midiseed model (metadata {', '.join(META + k for k in missing)} missing); "
            "export one with `midiseed export`"
        )
    meta = {}
    for key, value in raw.items():
        if key.startswith(META):
            try:
                meta[key[len(META) :]] = json.loads(value)
            except ValueError:
                meta[key[len(META) :]] = value
    try:
        codec = Codec.from_json(raw[META + "codec"])
    except CodecError as err:
        raise ModelError(f"{path}: {err}") from err
    return ModelInfo(codec=codec, model=meta["model"], io=meta["io"], preset=str(meta["preset"]), meta=meta)


def _gpu_present() -> bool:
    """An NVIDIA driver is loaded (checked before asking onnxruntime, whose CUDA probe is noisy)."""
    import os
    import sys

    if sys.platform == "win32":
        return True
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


class Engine:
    """Runs the stateful graph: token ids + LSTM states in, logits + new states out."""

    def __init__(self, path: str | Path | None = None, provider: str = "auto", threads: int = 1) -> None:
        import onnxruntime as ort

        if provider not in ("auto", *PROVIDERS):
            raise BadValue(f"provider must be auto, cpu or cuda, got {provider!r}")
        self.path = model_path(path)
        ort.set_default_logger_severity(3)  # onnxruntime's fallback warnings would drown the log
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # one step is too small to split across threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        if provider == "cuda" and PROVIDERS["cuda"] not in available:
            # the default install is the CPU-only onnxruntime; both wheels provide the same module
            raise ModelError(f"provider cuda asked for, but this onnxruntime is CPU-only: {GPU_INSTALL}")
        if provider == "auto" and PROVIDERS["cuda"] not in available and _gpu_present():
            log.info("a GPU is present but this onnxruntime is CPU-only; for CUDA: %s", GPU_INSTALL)
        wanted = [PROVIDERS["cpu"]]
        if PROVIDERS["cuda"] in available and (provider == "cuda" or (provider == "auto" and _gpu_present())):
            wanted = [PROVIDERS["cuda"], PROVIDERS["cpu"]]
        self.session = _session(self.path, options, wanted)
        self.provider = self.session.get_providers()[0]
        if provider == "cuda" and self.provider != PROVIDERS["cuda"]:
            raise ModelError(
                "provider cuda asked for, but onnxruntime-gpu found no usable GPU "
                "(check the NVIDIA driver with nvidia-smi, and CUDA/cuDNN versions it needs)"
            )
        self.info = _info(self.path, self.session)
        self.codec = self.info.codec
        io = self.info.io
        self._tokens, self._states, self._logits = io["tokens"], io["states"], io["logits"]
        self._outputs = [self._logits, *io["states_out"]]
        self._sizes = [u for u in self.info.model["lstm_units"] for _ in (0, 1)]
        log.debug("model %s on %s", self.path, self.provider)

    def zero_state(self, batch: int = 1) -> list[np.ndarray]:
        """The LSTM states before any input: [h0, c0, h1, c1, ...]."""
        return [np.zeros((batch, n), dtype=np.float32) for n in self._sizes]

    def run(self, tokens: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """tokens (B, T) -> logits (B, T, V) and the states after the last token."""
        feed = {self._tokens: np.asarray(tokens, dtype=np.int32)}
        feed.update(zip(self._states, state))
        logits, *new_state = self.session.run(self._outputs, feed)
        return logits, new_state

    def step(self, token: int, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One token -> its next-token logits (V,) and the new states."""
        logits, new_state = self.run(np.array([[token]], dtype=np.int32), state)
        return logits[0, -1], new_state
