"""The bench's pure pieces: statistics, grid fitting, the config it writes, the table; and one real
step measurement on the tiny model. No timing thresholds: only that the numbers are sane."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from midiseed import bench


def test_percentiles_are_in_milliseconds():
    p50, p99 = bench.percentiles_ms([0.001] * 99 + [0.1])
    assert p50 == pytest.approx(1.0)
    assert 1.0 < p99 <= 100.0
    stats = bench.latency_stats(np.full(10, 0.002))
    assert stats == {"p50_ms": 2.0, "p99_ms": 2.0, "n": 10}


def test_percentiles_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no samples"):
        bench.percentiles_ms([])


def test_grid_deviations_recover_known_offsets_whatever_the_phase():
    step = 0.125  # a sixteenth at 120 bpm
    rng = np.random.default_rng(3)
    devs = rng.uniform(-0.0008, 0.0008, 200)
    devs -= np.median(devs)  # the fitted phase is the median offset: make it the true grid
    slots = np.sort(rng.choice(np.arange(1000), 200, replace=False))  # rests: not every step plays
    onsets = 12.345 + slots * step + devs
    found = bench.grid_deviations(onsets, step)
    np.testing.assert_allclose(found, devs, atol=1e-9)


def test_grid_deviations_of_a_perfect_grid_are_zero_even_with_a_late_first_onset():
    step = 60 / (180 * 4)
    onsets = np.arange(50) * step
    onsets[0] += 0.0005
    found = bench.grid_deviations(onsets, step)
    assert np.abs(found[1:]).max() < 1e-9
    assert found[0] == pytest.approx(0.0005)


def test_onset_groups_merge_a_chord_into_its_first_note():
    times = [1.0, 1.0001, 1.0002, 1.125, 1.25, 1.2501]
    assert bench.onset_groups(times, 0.03) == [1.0, 1.125, 1.25]


def test_clock_delays_use_the_nearest_grid_pulse():
    pulses = np.arange(48) * 0.02  # grid pulses every 6: 0.0, 0.12, 0.24, ...
    arrivals = [0.1215, 0.2430, 0.3590]  # 1.5 ms, 3 ms late, and 1 ms early
    np.testing.assert_allclose(bench.clock_delays(arrivals, pulses, 6), [0.0015, 0.003, -0.001], atol=1e-9)


def test_daemon_config_is_valid_toml_for_the_daemon(tmp_path):
    from midiseed.daemon.config import load

    text = bench.daemon_config(
        "mbench1-x", Path("/m.onnx"), {"timing": {"chord_ms": 0, "quantize_start": False, "bpm": 20}}
    )
    path = tmp_path / "c.toml"
    path.write_text(text)
    cfg = load(path)
    assert (cfg.backend, cfg.out_port, cfg.quantize_start, cfg.bpm) == ("jack", "mbench1-x-out", False, 20.0)


def test_a_failing_section_is_reported_not_raised():
    def no_tf():
        raise ImportError("No module named 'tensorflow'")

    def broken():
        raise RuntimeError("port vanished")

    def skipped():
        raise bench.Skip("no jackd")

    assert bench.run_section("x", no_tf) == {"skipped": "missing package: No module named 'tensorflow'"}
    assert bench.run_section("x", broken) == {"skipped": "failed: RuntimeError: port vanished"}
    assert bench.run_section("x", skipped) == {"skipped": "no jackd"}


def test_a_missing_model_is_a_user_error_and_a_shipped_name_is_found(monkeypatch, tmp_path):
    import midiseed.runtime.engine
    from midiseed.errors import UserError

    assert bench.resolve_model("default") == midiseed.runtime.engine.DEFAULT_MODEL.resolve()
    # the chorale specialist ships beside the default, selectable by name
    chorale = bench.resolve_model("chorale")
    assert (
        chorale == (midiseed.runtime.engine.SHIPPED_MODELS / "chorale.onnx").resolve() and chorale.is_file()
    )
    assert {"default", "chorale"} <= set(midiseed.runtime.engine.shipped_names())
    monkeypatch.setattr(midiseed.runtime.engine, "DEFAULT_MODEL", tmp_path / "none.onnx")
    with pytest.raises(UserError, match=r"none\.onnx does not exist"):
        bench.resolve_model(None)
    with pytest.raises(UserError, match="does not exist"):
        bench.resolve_model(tmp_path / "missing.onnx")


def test_bench_with_a_missing_model_exits_2_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from midiseed.cli import app

    result = CliRunner().invoke(app, ["bench", "--model", str(tmp_path / "missing.onnx"), "--quick"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "missing.onnx does not exist" in result.output


def test_format_table_shows_met_missed_and_skipped():
    results = {
        "machine": {"cpu": "x", "cores": 2},
        "sections": {
            "step": {"p50_ms": 0.1, "p99_ms": 0.2, "how": "5000 steps", "goal": "p99 <= 0.5 ms", "met": True},
            "int8": {"summary": "a | b", "how": "q", "goal": "agreement >= 99%", "met": False},
            "limit": {"bound_ms": 0.01, "goal": "none", "met": None},
            "jitter": {"skipped": "no JACK server runs and jackd is not installed"},
        },
        "seconds": 1.0,
    }
    table = bench.format_table(results)
    lines = table.splitlines()
    assert lines[0] == "| figure | how | result | goal | met? |"
    assert len(lines) == 2 + 4
    assert all(len(re.split(r"(?<!\\)\|", line)) == 7 for line in lines)  # 5 cells, \| escaped
    assert "| step | 5000 steps | p50_ms 0.1, p99_ms 0.2 | p99 <= 0.5 ms | yes |" in lines
    assert lines[3].endswith("| no |") and "a \\| b" in lines[3]
    assert lines[4].endswith("| – |")
    assert "skipped: no JACK server runs" in lines[5]


def test_machine_info_is_json():
    info = bench.machine_info()
    assert info["cores"] >= 1 and info["python"]
    json.dumps(info)


def test_step_section_on_the_tiny_model(tiny_onnx):
    result = bench.bench_step(tiny_onnx[0], steps=200, warmup=20)
    assert result["n"] == 200
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["met"] in (True, False)
    assert result["preset"] == "tiny"
    assert 0 < result["memory_event_p50_ms"] <= result["memory_event_p99_ms"]
    assert 0 < result["chord_event_p50_ms"] <= result["chord_event_p99_ms"]
    assert result["chord_tokens_per_event"] >= 2  # a four-part phrase is answered in chords
    assert 0 < result["pitch_guard_chord_event_p50_ms"] <= result["pitch_guard_chord_event_p99_ms"]
    json.dumps(bench._jsonable(result))
