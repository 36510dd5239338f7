"""`midiseed bench`: what one step, the data pipeline and the live daemon cost, measured here.

Every latency is a median (p50) and a p99 over many repetitions; every comparison is a ratio of two
things measured side by side in the same run. Each section runs on its own: one that cannot run on
this machine (no TensorFlow, no JACK server, no data folder) is reported as skipped with the reason,
and an unexpected error in one section is reported the same way instead of ending the bench.

Sections, in the order of the results:

- ``step``: one token through the stateful graph, state carried (onnxruntime, CPU, one thread);
- ``seed_style``: the seed project's way, 3×LSTM(512) re-run on its whole 100-token window per note,
  in Keras ``predict`` and in onnxruntime, against our one step;
- ``limit``: the memory-bandwidth floor of one step (weight bytes / measured copy bandwidth);
- ``int8``: dynamic int8 quantisation: speed, and top-1 agreement with fp32;
- ``data``: reading + tokenising a MIDI folder, against music21's parser, projected to Lakh MIDI;
- ``cold_start``, ``reaction``, ``jitter``, ``clock``: the daemon on real JACK ports, driven and
  recorded by a separate JACK client in this process;
- ``cpu``: the daemon's CPU, idle and streaming at 120 bpm, from /proc/PID/stat (cpu.py).

TensorFlow is imported only inside ``seed_style``, which runs last so its threads never share the
machine with another section's timing.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from midiseed.bench.data import LAKH_FILES, LAKH_GOAL_MINUTES, MUSIC21_RATIO_GOAL, bench_data
from midiseed.bench.inference import (
    INT8_AGREEMENT_GOAL,
    KERAS_RATIO_GOAL,
    STEP_P99_GOAL_MS,
    WINDOW_ONNX_RATIO_GOAL,
    bench_int8,
    bench_limit,
    bench_seed_style,
    bench_step,
    copy_bandwidth,
    quantize_int8,
    weight_bytes,
)
from midiseed.bench.live import (
    COLD_START_GOAL_S,
    EXTRA_DELAY_GOAL_MS,
    RSS_GOAL_MB,
    _unique,
    bench_clock,
    bench_cold_start,
    bench_jitter,
    bench_reaction,
    measure_jack_hop,
    running_daemon,
)
from midiseed.bench.rig import DaemonProcess, JackServer, Player, PortWatch, daemon_config, sleep_until
from midiseed.bench.stats import (
    Skip,
    _jsonable,
    _round,
    clock_delays,
    grid_deviations,
    latency_stats,
    machine_info,
    onset_groups,
    percentiles_ms,
    resolve_model,
)

__all__ = [
    "COLD_START_GOAL_S",
    "EXTRA_DELAY_GOAL_MS",
    "INT8_AGREEMENT_GOAL",
    "JACK_SECTIONS",
    "KERAS_RATIO_GOAL",
    "LAKH_FILES",
    "LAKH_GOAL_MINUTES",
    "MUSIC21_RATIO_GOAL",
    "RSS_GOAL_MB",
    "SECTIONS",
    "STEP_P99_GOAL_MS",
    "WINDOW_ONNX_RATIO_GOAL",
    "DaemonProcess",
    "JackServer",
    "Player",
    "PortWatch",
    "Skip",
    "_jsonable",
    "_round",
    "bench_clock",
    "bench_cold_start",
    "bench_data",
    "bench_int8",
    "bench_jitter",
    "bench_limit",
    "bench_reaction",
    "bench_seed_style",
    "bench_step",
    "clock_delays",
    "copy_bandwidth",
    "daemon_config",
    "format_table",
    "grid_deviations",
    "latency_stats",
    "machine_info",
    "measure_jack_hop",
    "onset_groups",
    "percentiles_ms",
    "quantize_int8",
    "resolve_model",
    "run_bench",
    "run_section",
    "running_daemon",
    "sleep_until",
    "weight_bytes",
]

log = logging.getLogger(__name__)

SECTIONS = ("step", "seed_style", "limit", "int8", "data", "cold_start", "reaction", "jitter", "clock", "cpu")
JACK_SECTIONS = ("cold_start", "reaction", "jitter", "clock", "cpu")


# ---- the whole bench -----------------------------------------------------------------------------


def run_section(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one section; a section that cannot run, or fails, becomes {"skipped": reason}."""
    t0 = time.perf_counter()
    try:
        result = fn()
    except Skip as err:
        return {"skipped": str(err)}
    except ImportError as err:
        return {"skipped": f"missing package: {err}"}
    except Exception as err:
        log.debug("section %s failed", name, exc_info=True)
        return {"skipped": f"failed: {type(err).__name__}: {' '.join(str(err).split())[:400]}"}
    result["section_seconds"] = round(time.perf_counter() - t0, 2)
    return result


@contextmanager
def _fine_thread_switching(interval: float = 1e-4) -> Iterator[None]:
    """A shorter GIL switch interval, so rtmidi's callback thread stamps arrivals without waiting
    on the main thread (the default 5 ms would be in every latency)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _jack_sections(model: Path, quick: bool, tmp: Path) -> dict[str, dict[str, Any]]:
    """The four port sections on one JACK server; all skipped with one reason if there is none."""
    try:
        server = JackServer(tmp / "jackd.log").__enter__()  # its log counts xruns (a private server)
    except Skip as err:
        return {name: {"skipped": str(err)} for name in JACK_SECTIONS}
    except Exception as err:
        return {name: {"skipped": f"JACK: {type(err).__name__}: {err}"} for name in JACK_SECTIONS}
    results: dict[str, dict[str, Any]] = {}
    watch = None
    try:
        watch = PortWatch(_unique("watch"))
        with _fine_thread_switching():
            results["cold_start"] = run_section("cold_start", lambda: bench_cold_start(model, tmp, watch))
            results["reaction"] = run_section(
                "reaction", lambda: bench_reaction(model, tmp, watch, server, quick)
            )
            results["jitter"] = run_section("jitter", lambda: bench_jitter(model, tmp, watch, quick))
            reaction = results["reaction"] if "skipped" not in results["reaction"] else None
            results["clock"] = run_section("clock", lambda: bench_clock(model, tmp, watch, quick, reaction))
            from midiseed.bench.cpu import bench_cpu  # not at the top: `python -m midiseed.bench.cpu` runs it

            results["cpu"] = run_section("cpu", lambda: bench_cpu(model, tmp, watch, server, quick))
    except Exception as err:
        for name in JACK_SECTIONS:
            results.setdefault(name, {"skipped": f"JACK: {type(err).__name__}: {err}"})
    finally:
        if watch is not None:
            watch.close()
        server.__exit__(None, None, None)
    return results


def run_bench(
    model: Path | None, quick: bool = False, jack: bool = True, data_dir: Path | None = None
) -> dict[str, Any]:
    """Run every section and return {"machine", "sections", "seconds"} (JSON-serialisable).

    `model`: the ONNX file to measure (None: the shipped models/default.onnx; ValueError if there is
    neither). `quick`: fewer repetitions and shorter runs. `jack`: run the four sections on real JACK
    ports. `data_dir`: a MIDI folder for the data section (skipped without one).
    """
    t_start = time.perf_counter()
    path = resolve_model(model)
    sections: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="midiseed-bench-") as tmp_name:
        tmp = Path(tmp_name)
        sections["step"] = run_section(
            "step", lambda: bench_step(path, *((1000, 200) if quick else (5000, 500)))
        )
        step_p50 = sections["step"].get("p50_ms")
        sections["limit"] = run_section("limit", lambda: bench_limit(path, step_p50, quick))
        sections["int8"] = run_section("int8", lambda: bench_int8(path, quick, tmp))
        if data_dir is None:
            sections["data"] = {"skipped": "no data folder given"}
        elif not Path(data_dir).is_dir():
            sections["data"] = {"skipped": f"data folder {data_dir} does not exist"}
        else:
            sections["data"] = run_section("data", lambda: bench_data(path, Path(data_dir), quick))
        if jack:
            sections.update(_jack_sections(path, quick, tmp))
        else:
            sections.update({name: {"skipped": "port sections not asked for"} for name in JACK_SECTIONS})
        # last: TensorFlow's thread pools must not share the CPU with any other section's timing
        sections["seed_style"] = run_section(
            "seed_style", lambda: bench_seed_style(path, step_p50, quick, tmp)
        )
    results = {
        "machine": machine_info(),
        "model": str(path),
        "quick": quick,
        "sections": {name: sections[name] for name in SECTIONS if name in sections},
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    return _jsonable(results)


# ---- the report ----------------------------------------------------------------------------------


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _fallback_summary(section: dict[str, Any]) -> str:
    skip = {"how", "goal", "met", "summary", "section_seconds"}
    return ", ".join(f"{k} {v}" for k, v in section.items() if k not in skip and not isinstance(v, dict))


def format_table(results: dict[str, Any]) -> str:
    """The results as a markdown table: figure | how | result | goal | met?"""
    rows = ["| figure | how | result | goal | met? |", "| --- | --- | --- | --- | --- |"]
    for name, section in results.get("sections", {}).items():
        if "skipped" in section:
            rows.append(f"| {_cell(name)} | – | skipped: {_cell(section['skipped'])} | – | – |")
            continue
        met = section.get("met")
        mark = "yes" if met is True else "no" if met is False else "–"
        result = section.get("summary") or _fallback_summary(section)
        how, goal = section.get("how", "–"), section.get("goal", "–")
        rows.append(f"| {_cell(name)} | {_cell(how)} | {_cell(result)} | {_cell(goal)} | {mark} |")
    return "\n".join(rows)
