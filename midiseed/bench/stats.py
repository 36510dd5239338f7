"""The bench's pure pieces: percentiles, grid and clock deviations, JSON, the machine and the model."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class Skip(Exception):
    """A section that cannot run on this machine; the message says why."""


# ---- statistics (pure) ---------------------------------------------------------------------------


def percentiles_ms(samples_s: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(p50, p99) of durations given in seconds, in milliseconds."""
    values = np.asarray(samples_s, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples to take percentiles of")
    p50, p99 = np.percentile(values, [50, 99]) * 1000.0
    return float(p50), float(p99)


def latency_stats(samples_s: Sequence[float] | np.ndarray) -> dict[str, float | int]:
    """{"p50_ms", "p99_ms", "n"} of durations given in seconds."""
    p50, p99 = percentiles_ms(samples_s)
    return {"p50_ms": _round(p50), "p99_ms": _round(p99), "n": len(samples_s)}


def onset_groups(times: Sequence[float], gap_s: float) -> list[float]:
    """Arrival times of note-ons -> one time per onset: notes arriving within `gap_s` of the first
    note of a group (a chord, sent in one go) belong to that group, which is timed by its first note."""
    starts: list[float] = []
    for t in sorted(times):
        if not starts or t - starts[-1] > gap_s:
            starts.append(t)
    return starts


def grid_deviations(onsets: Sequence[float], step_s: float) -> np.ndarray:
    """Signed deviation (seconds) of each onset from an ideal grid of `step_s`.

    Onsets are taken relative to the first one; each is compared with the nearest multiple of the
    step. The grid's phase is then fitted as the median of those offsets (so a late first onset
    does not shift every other one), and the deviations are taken again from the fitted grid.
    """
    if step_s <= 0:
        raise ValueError(f"grid step must be positive, got {step_s}")
    t = np.sort(np.asarray(onsets, dtype=np.float64))
    if t.size == 0:
        return t
    rel = t - t[0]

    def wrap(x: np.ndarray) -> np.ndarray:
        return x - step_s * np.round(x / step_s)

    phase = float(np.median(wrap(rel)))
    return wrap(rel - phase)


def clock_delays(arrivals: Sequence[float], pulse_times: Sequence[float], pulses_per_step: int) -> np.ndarray:
    """For each arrival: arrival - send time of the nearest grid pulse (pulse index % pulses_per_step
    == 0, index 0 = the first pulse after Start), in seconds."""
    grid = np.asarray(pulse_times, dtype=np.float64)[::pulses_per_step]
    a = np.asarray(arrivals, dtype=np.float64)
    if grid.size == 0 or a.size == 0:
        return np.zeros(0)
    right = np.clip(np.searchsorted(grid, a), 0, grid.size - 1)
    left = np.clip(right - 1, 0, grid.size - 1)
    nearest = np.where(np.abs(a - grid[left]) <= np.abs(a - grid[right]), grid[left], grid[right])
    return a - nearest


def _round(x: float, digits: int = 4) -> float:
    """Round to `digits` significant digits (readable JSON, no false precision)."""
    if x == 0 or not np.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, tuples and Paths -> plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


# ---- the machine and the model -------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU model, core count, Python and onnxruntime versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime as ort

        ort_version = ort.__version__
    except ImportError:
        ort_version = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 1,
        "python": platform.python_version(),
        "onnxruntime": ort_version,
    }


def resolve_model(model: Path | str | None) -> Path:
    """The model file to measure: a path, a shipped model's name, or (None) the shipped default.
    A missing one is a ModelError (a user error: one line, exit status 2)."""
    from midiseed.runtime.engine import ModelError, model_path

    path = model_path(model)
    if not path.is_file():
        raise ModelError(
            f"model file {path} does not exist; export one with `midiseed export RUN_DIR --out MODEL.onnx` "
            "and pass it with --model"
        )
    return path.resolve()
