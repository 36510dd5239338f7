"""What one step of the model costs: the ``step``, ``seed_style``, ``limit`` and ``int8`` sections."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from midiseed.bench.stats import Skip, _round, latency_stats
from midiseed.runtime.memory import MEMORY_WEIGHT

STEP_P99_GOAL_MS = 0.5
MELODY_SEED = "C4+E4+G4 D4 E4 F4 G4:2"  # a chord, then a line: answered mostly in single notes
CHORALE_SEED = "G3+B3+D4+G4 A3+C4+E4+A4 B3+D4+F#4+G4 C4+E4+G4+C5 A3+C4+E4+A4 D4+F#4+A4+D5 D3+A3+F#4+D5"
KERAS_RATIO_GOAL = 300.0
WINDOW_ONNX_RATIO_GOAL = 50.0
INT8_AGREEMENT_GOAL = 0.99


def _cpu_engine(path: Path):
    from midiseed.runtime.engine import Engine

    return Engine(path, provider="cpu", threads=1)


# ---- 1. step -------------------------------------------------------------------------------------


def bench_step(model: Path, steps: int = 5000, warmup: int = 500) -> dict[str, Any]:
    """One token at a time with the state carried (greedy: each step is fed the last argmax)."""
    engine = _cpu_engine(model)
    state = engine.zero_state()
    token = 0
    times = np.empty(steps)
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        logits, state = engine.step(token, state)
        dt = time.perf_counter() - t0
        token = int(np.argmax(logits))
        if i >= warmup:
            times[i - warmup] = dt
    stats = latency_stats(times)
    events = _event_times(engine, max(200, steps // 4))
    chords = _event_times(engine, max(200, steps // 4), seed=CHORALE_SEED)
    guarded = _event_times(engine, max(200, steps // 4), seed=CHORALE_SEED, pitch_guard=True)
    with_memory = _event_times(engine, max(200, steps // 4), MEMORY_WEIGHT)
    return {
        **stats,
        "event_p50_ms": events["p50_ms"],
        "event_p99_ms": events["p99_ms"],
        "tokens_per_event": events["tokens_per_event"],
        "chord_event_p50_ms": chords["p50_ms"],
        "chord_event_p99_ms": chords["p99_ms"],
        "chord_tokens_per_event": chords["tokens_per_event"],
        "pitch_guard_chord_event_p50_ms": guarded["p50_ms"],
        "pitch_guard_chord_event_p99_ms": guarded["p99_ms"],
        "memory_event_p50_ms": with_memory["p50_ms"],
        "memory_event_p99_ms": with_memory["p99_ms"],
        "memory_tokens_per_event": with_memory["tokens_per_event"],
        "model": str(model),
        "preset": engine.info.preset,
        "lstm_units": list(engine.info.model["lstm_units"]),
        "provider": engine.provider,
        "how": f"{steps} single-token steps after {warmup} warm-up, state carried, onnxruntime CPU, 1 thread",
        "summary": (
            f"token step p50 {stats['p50_ms']} ms, p99 {stats['p99_ms']} ms; a whole event (as served: "
            f"greedy, following the seed, loop guard, grammar mask; {events['tokens_per_event']} tokens "
            f"on average) p50 {events['p50_ms']} ms, p99 {events['p99_ms']} ms; answering a four-part "
            f"phrase ({chords['tokens_per_event']} tokens an event) p50 {chords['p50_ms']} ms, "
            f"p99 {chords['p99_ms']} ms, with the pitch guard p50 {guarded['p50_ms']} ms, "
            f"p99 {guarded['p99_ms']} ms; "
            f"with the piece's memory (--memory {MEMORY_WEIGHT}, "
            f"{with_memory['tokens_per_event']} tokens an event: it plays other music) "
            f"p50 {with_memory['p50_ms']} ms, p99 {with_memory['p99_ms']} ms"
        ),
        "goal": f"p99 <= {STEP_P99_GOAL_MS} ms (a model step)",
        "met": stats["p99_ms"] <= STEP_P99_GOAL_MS,
    }


def _event_times(
    engine, count: int, memory: float = 0.0, seed: str = MELODY_SEED, pitch_guard: bool = False
) -> dict[str, float]:
    """Generator.next_event as the daemon calls it after hearing `seed` (by default: greedy,
    following it, with the loop guard and the grammar mask), state carried; with `memory`, the
    piece's memory of that weight mixed in (its window fills within the run); with `pitch_guard`,
    the pitch guard on."""
    from midiseed.runtime.generate import Generator, parse_seed_notes
    from midiseed.runtime.sampling import LOOP_GUARD, Decoding

    gen = Generator(engine, Decoding(loop_guard=LOOP_GUARD, pitch_guard=pitch_guard, memory=memory))
    gen.prime(parse_seed_notes(seed, engine.codec.grid.steps_per_beat))
    times = np.empty(count)
    tokens = 0
    for i in range(count):
        t0 = time.perf_counter()
        event = gen.next_event()
        times[i] = time.perf_counter() - t0
        tokens += len(engine.codec.encode_event(event))  # its spelling: one model step a token
    return {**latency_stats(times), "tokens_per_event": round(tokens / count, 2)}


# ---- 2. seed_style -------------------------------------------------------------------------------


def _ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def bench_seed_style(model: Path, ours_p50_ms: float | None, quick: bool, tmp: Path) -> dict[str, Any]:
    """The seed project's network re-run on its whole window per note: Keras predict, then onnxruntime."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
    except ImportError as err:
        raise Skip(f"needs Keras with TensorFlow (the [train] extra): {err}") from err
    if keras.backend.backend() != "tensorflow":
        raise Skip(f"needs the TensorFlow backend for tf2onnx, KERAS_BACKEND is {keras.backend.backend()}")
    try:
        import tf2onnx  # noqa: F401
    except ImportError as err:
        raise Skip(f"needs tf2onnx (the [train] extra): {err}") from err
    from midiseed.export.onnx_export import convert
    from midiseed.runtime.engine import read_info
    from midiseed.training.model import build_model, copy_weights, preset_config

    vocab = len(read_info(model).codec)
    cfg = preset_config("seed", vocab_size=vocab)
    window = np.random.default_rng(0).integers(0, vocab, (1, cfg.seq_len)).astype(np.int32)
    n_keras, n_onnx = (10, 50) if quick else (50, 200)

    windowed = build_model(cfg)  # random weights: the cost does not depend on their values
    for _ in range(3):
        windowed.predict(window, verbose=0)
    keras_times = []
    for _ in range(n_keras):
        t0 = time.perf_counter()
        windowed.predict(window, verbose=0)
        keras_times.append(time.perf_counter() - t0)

    stateful = build_model(cfg, stateful=True)
    copy_weights(windowed, stateful)
    path = tmp / "seed-window.onnx"
    io = convert(stateful, cfg, path)
    session = _ort_session(path)
    feed: dict[str, np.ndarray] = {io["tokens"]: window}
    for name, units in zip(io["states"], [u for u in cfg.lstm_units for _ in (0, 1)]):
        feed[name] = np.zeros((1, units), dtype=np.float32)
    outputs = [io["logits"]]
    for _ in range(5):
        session.run(outputs, feed)
    onnx_times = []
    for _ in range(n_onnx):
        t0 = time.perf_counter()
        session.run(outputs, feed)
        onnx_times.append(time.perf_counter() - t0)
    del windowed, stateful
    keras.backend.clear_session()

    k, o = latency_stats(keras_times), latency_stats(onnx_times)
    out: dict[str, Any] = {
        "keras_predict": k,
        "window_onnx": o,
        "ours_step_p50_ms": ours_p50_ms,
        "weights_mb": _round(path.stat().st_size / 1e6),
        "how": (
            f"seed preset 3×LSTM(512), dense 256, vocab {vocab}, random weights, whole {cfg.seq_len}-token "
            f"window per note: Keras predict (TF, default threads) ×{n_keras}; the same window in "
            f"onnxruntime (tf2onnx, zero states, CPU, 1 thread) ×{n_onnx}; ratio = their p50 / our step p50 "
            "(one token; a one-note event is two tokens)"
        ),
        "goal": (
            f">= {KERAS_RATIO_GOAL:g}x vs Keras predict, "
            f">= {WINDOW_ONNX_RATIO_GOAL:g}x vs windowed onnxruntime"
        ),
    }
    if ours_p50_ms:
        rk, ro = k["p50_ms"] / ours_p50_ms, o["p50_ms"] / ours_p50_ms
        out.update(ratio_vs_keras=_round(rk, 3), ratio_vs_window_onnx=_round(ro, 3))
        out["met"] = rk >= KERAS_RATIO_GOAL and ro >= WINDOW_ONNX_RATIO_GOAL
        ratios = f"; ours is {rk:.0f}x / {ro:.0f}x faster"
    else:
        out["met"] = None
        ratios = "; no step figure to compare with"
    out["summary"] = (
        f"Keras p50 {k['p50_ms']} / p99 {k['p99_ms']} ms, window onnxruntime p50 {o['p50_ms']} / "
        f"p99 {o['p99_ms']} ms{ratios}"
    )
    return out


# ---- 3. limit ------------------------------------------------------------------------------------


def weight_bytes(model: Path) -> tuple[int, str]:
    """Bytes of the model's weights: the ONNX initializers (or the preset's parameter count × 4
    when the `onnx` package is not installed). Returns (bytes, how it was counted)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        from midiseed.runtime.engine import read_info
        from midiseed.training.model import ModelConfig, weight_count

        cfg = ModelConfig.from_dict(read_info(model).model)
        return weight_count(cfg) * 4, "parameter count × 4 bytes (onnx not installed)"
    graph = onnx.load(str(model)).graph
    total = sum(numpy_helper.to_array(init).nbytes for init in graph.initializer)
    return int(total), "sum of the ONNX initializers"


def copy_bandwidth(megabytes: int = 256, repeats: int = 10) -> list[float]:
    """GB/s of numpy copying a `megabytes` array (bytes read + bytes written), once per repeat."""
    n = megabytes * 1024 * 1024 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch every page first
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        rates.append(2 * src.nbytes / (time.perf_counter() - t0) / 1e9)
    return rates


def bench_limit(model: Path, step_p50_ms: float | None, quick: bool) -> dict[str, Any]:
    """How far one step is from the time it takes just to read every weight once."""
    size, counted = weight_bytes(model)
    rates = copy_bandwidth(256, 3 if quick else 10)
    bandwidth = float(np.median(rates))
    bound_ms = size / (bandwidth * 1e9) * 1000
    out: dict[str, Any] = {
        "weight_bytes": size,
        "bandwidth_gb_s": _round(bandwidth),
        "bound_ms": _round(bound_ms),
        "step_p50_ms": step_p50_ms,
        "how": (
            f"weights = {counted}; bandwidth = median of {len(rates)} numpy copies of 256 MB "
            "(read + write bytes); bound = weights / bandwidth; ratio = step p50 / bound"
        ),
        "goal": "none (context: how close a step is to the bandwidth floor)",
        "met": None,
    }
    summary = f"{size / 1e6:.2f} MB at {bandwidth:.1f} GB/s = {bound_ms:.4f} ms"
    if step_p50_ms:
        out["step_over_bound"] = _round(step_p50_ms / bound_ms, 3)
        summary += f"; step p50 is {step_p50_ms / bound_ms:.1f}x that"
    out["summary"] = summary
    return out


# ---- 4. int8 -------------------------------------------------------------------------------------


def quantize_int8(model: Path, out: Path) -> Path:
    """Dynamic int8 quantisation (QInt8 weights) of a midiseed model, keeping its metadata."""
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as err:
        raise Skip(f"int8 quantisation needs the onnx package (the [train] extra): {err}") from err
    logging.getLogger("root").setLevel(logging.ERROR)  # the quantiser's "consider pre-processing" hint
    quantize_dynamic(str(model), str(out), weight_type=QuantType.QInt8)
    source = onnx.load(str(model), load_external_data=False)
    quantized = onnx.load(str(out))
    if {p.key for p in quantized.metadata_props} != {p.key for p in source.metadata_props}:
        del quantized.metadata_props[:]
        for prop in source.metadata_props:
            entry = quantized.metadata_props.add()
            entry.key, entry.value = prop.key, prop.value
        onnx.save(quantized, str(out))
    return out


def bench_int8(model: Path, quick: bool, tmp: Path) -> dict[str, Any]:
    """fp32 vs int8: step times in interleaved blocks, then top-1 agreement on one greedy stream."""
    from midiseed.runtime.codec import Event

    int8_path = quantize_int8(model, tmp / "int8.onnx")
    engines = {"fp32": _cpu_engine(model), "int8": _cpu_engine(int8_path)}
    steps, block = (1000, 100) if quick else (5000, 250)
    times: dict[str, list[float]] = {k: [] for k in engines}
    states = {k: e.zero_state() for k, e in engines.items()}
    tokens = dict.fromkeys(engines, 0)
    for _ in range(100):  # warm-up
        for k, e in engines.items():
            logits, states[k] = e.step(tokens[k], states[k])
            tokens[k] = int(np.argmax(logits))
    for _ in range(steps // block):
        for k, e in engines.items():
            for _ in range(block):
                t0 = time.perf_counter()
                logits, states[k] = e.step(tokens[k], states[k])
                times[k].append(time.perf_counter() - t0)
                tokens[k] = int(np.argmax(logits))

    fp32, int8 = engines["fp32"], engines["int8"]
    n_agree = 500 if quick else 2000
    prime = fp32.codec.encode([Event((), (), fp32.codec.grid.steps_per_beat)])[None, :]  # a beat's rest
    lf, sf = fp32.run(prime, fp32.zero_state())
    lq, sq = int8.run(prime, int8.zero_state())
    lf, lq = lf[0, -1], lq[0, -1]
    same = 0
    for _ in range(n_agree):
        chosen = int(np.argmax(lf))
        same += chosen == int(np.argmax(lq))
        lf, sf = fp32.step(chosen, sf)
        lq, sq = int8.step(chosen, sq)
    agreement = same / n_agree

    f, q = latency_stats(times["fp32"]), latency_stats(times["int8"])
    speedup = f["p50_ms"] / q["p50_ms"]
    return {
        "fp32": f,
        "int8": q,
        "speedup_p50": _round(speedup, 3),
        "top1_agreement": _round(agreement, 4),
        "agreement_steps": n_agree,
        "int8_bytes": int8_path.stat().st_size,
        "fp32_bytes": model.stat().st_size,
        "how": (
            f"quantize_dynamic QInt8; {steps} steps each in interleaved blocks of {block}, CPU, 1 thread; "
            f"agreement: {n_agree} greedy steps, both fed fp32's argmax"
        ),
        "summary": (
            f"fp32 p50 {f['p50_ms']} / p99 {f['p99_ms']} ms, int8 p50 {q['p50_ms']} / p99 {q['p99_ms']} ms "
            f"({speedup:.2f}x); top-1 agreement {agreement:.1%}"
        ),
        "goal": f"agreement >= {INT8_AGREEMENT_GOAL:.0%}",
        "met": agreement >= INT8_AGREEMENT_GOAL,
    }
