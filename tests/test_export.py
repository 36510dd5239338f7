import json
import shutil

import mido
import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from midiseed.cli import app
from midiseed.export.errors import ExportError
from midiseed.export.onnx_export import export, node_types
from midiseed.runtime.codec import Event
from midiseed.runtime.engine import Engine, ModelError
from midiseed.runtime.generate import Generator, parse_seed_notes
from midiseed.runtime.sampling import Decoding

runner = CliRunner()


def test_export_gives_onnx_lstm_ops_not_loops(tiny_onnx):
    ops = node_types(tiny_onnx[0])
    assert ops.count("LSTM") == 2
    assert not {"Loop", "Scan"} & set(ops)


def test_export_matches_keras_and_streaming_matches_one_call(tiny_onnx):
    report = tiny_onnx[1]
    assert report["windows"] >= 8  # validation windows from the run's token store (not random tokens)
    assert report["max_abs_prob_diff"] <= 1e-4
    assert report["stream_vs_batch_max_prob_diff"] <= 1e-4


def test_model_file_describes_itself(tiny_onnx, tiny_run):
    meta = {p.key: p.value for p in onnx.load(str(tiny_onnx[0])).metadata_props}
    for key in ["codec", "model", "io", "preset", "seq_len", "grid", "data", "metrics", "parity", "split"]:
        assert f"midiseed.{key}" in meta, key
    assert json.loads(meta["midiseed.preset"]) == "tiny"
    assert json.loads(meta["midiseed.data"])["files_read"] == 10
    split = json.loads(meta["midiseed.split"])
    assert split == json.loads((tiny_run / "split.json").read_text())
    assert {"train", "validation", "test", "held_out"} <= set(split) and split["held_out"] == split[
        "validation"
    ]
    assert json.loads(meta["midiseed.metrics"])["test_loss"] > 0
    engine = Engine(tiny_onnx[0], provider="cpu")
    assert engine.provider == "CPUExecutionProvider"
    assert engine.info.model["lstm_units"] == [32, 32]
    assert engine.codec.keys == json.loads((tiny_run / "codec.json").read_text())["vocab"]


def test_parity_windows_are_validation_music_from_the_runs_store(tiny_run, tmp_path):
    from midiseed.export.onnx_export import heldout_windows
    from midiseed.training.rundir import RunDir
    from midiseed.training.store import TokenStore

    run = RunDir(tiny_run)
    codec = run.read_codec()
    windows = heldout_windows(run, codec, 32, 4)
    tokens = TokenStore.open(run.read_config()["data"]["store"])
    first = next(f for f in tokens.files if f.path == run.read_split()["validation"][0])
    np.testing.assert_array_equal(windows[0], tokens.tokens_of(first)[:32])
    moved = tmp_path / "moved"
    shutil.copytree(tiny_run, moved)
    config = json.loads((moved / "config.json").read_text())
    config["data"]["store"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    assert heldout_windows(RunDir(moved), codec, 32, 4).shape == (4, 32)  # random tokens, same shape


def test_streaming_state_carries_across_calls(tiny_onnx):
    engine = Engine(tiny_onnx[0])
    tokens = np.array([[60, 256 + 3, 64, 256 + 3, 67, 256 + 7]], dtype=np.int32)
    whole, _ = engine.run(tokens, engine.zero_state())
    _, state = engine.run(tokens[:, :3], engine.zero_state())
    rest, _ = engine.run(tokens[:, 3:], state)
    np.testing.assert_allclose(whole[:, 3:], rest, atol=1e-5)


def test_int8_export_agrees_on_top1(tiny_run, tmp_path):
    report = export(tiny_run, tmp_path / "q.onnx", int8=True)
    assert report["top1_agreement"] >= 0.99
    assert "DynamicQuantizeLSTM" in node_types(tmp_path / "q.onnx")
    assert Engine(tmp_path / "q.onnx").info.meta["quantization"] == "int8-dynamic"


def test_export_refuses_incomplete_run_and_bad_output(tiny_run, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(tiny_run, broken)
    (broken / "model.keras").unlink()
    with pytest.raises(ExportError, match=r"missing model\.keras"):
        export(broken, tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="does not exist"):
        export(tiny_run, tmp_path / "no" / "such" / "x.onnx")
    config = json.loads((tiny_run / "config.json").read_text())
    config["preset"] = "enormous"
    shutil.copytree(tiny_run, tmp_path / "run2")
    (tmp_path / "run2" / "config.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["export", str(tmp_path / "run2"), "--out", str(tmp_path / "y.onnx")])
    assert result.exit_code == 2
    assert "unknown preset 'enormous'" in result.output


def test_engine_refuses_files_that_are_not_midiseed_models(tmp_path, tiny_onnx):
    with pytest.raises(ModelError, match="does not exist"):
        Engine(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match=r"is a folder .*`midiseed export`"):
        Engine(tmp_path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a usable ONNX model"):
        Engine(tmp_path / "junk.onnx")
    bare = onnx.load(str(tiny_onnx[0]))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelError, match="not a midiseed model"):
        Engine(tmp_path / "bare.onnx")
    result = runner.invoke(
        app,
        [
            "generate",
            "--model",
            str(tmp_path / "bare.onnx"),
            "--seed-notes",
            "C4",
            "--out",
            str(tmp_path / "o.mid"),
        ],
    )
    assert result.exit_code == 2
    assert "not a midiseed model" in result.output


def test_generator_greedy_is_deterministic_and_events_are_valid(tiny_onnx):
    engine = Engine(tiny_onnx[0])
    seed = parse_seed_notes("C4 E4 G4 C4+E4+G4:2 r", engine.codec.grid.steps_per_beat)
    runs = []
    for _ in range(2):
        gen = Generator(engine)
        gen.prime(seed)
        runs.append(gen.generate(40))
    assert runs[0] == runs[1]
    for ev in runs[0]:
        assert ev.pitches == tuple(sorted(set(ev.pitches)))
        assert 1 <= ev.steps <= engine.codec.grid.max_steps


def test_sampling_options_change_the_output_and_stay_valid(tiny_onnx):
    engine = Engine(tiny_onnx[0])
    seed = [Event((60,), (False,), 4)]
    outputs = {}
    for name, dec in {
        "greedy": Decoding(),
        "hot": Decoding(temperature=1.5, top_k=20),
        "guard": Decoding(no_repeat=4),
    }.items():
        gen = Generator(engine, dec, seed=1)
        gen.prime(seed)
        outputs[name] = gen.generate(30)
    assert outputs["hot"] != outputs["greedy"]
    for events in outputs.values():
        assert all(ev.pitches == tuple(sorted(set(ev.pitches))) for ev in events)


def test_generate_cli_writes_a_midi_file_in_time_and_a_piano_roll(tiny_onnx, tmp_path):
    out = tmp_path / "x.mid"
    result = runner.invoke(
        app,
        [
            "generate",
            "--model",
            str(tiny_onnx[0]),
            "--seed-notes",
            "C4 E4 G4",
            "--steps",
            "32",
            "--out",
            str(out),
            "--png",
            str(tmp_path / "x.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    mid = mido.MidiFile(out)
    ons = [m for m in mid.tracks[0] if m.type == "note_on" and m.velocity > 0]
    assert len(ons) >= 3
    assert [m.note for m in ons[:3]] == [60, 64, 67]
    assert (tmp_path / "x.png").stat().st_size > 1000
    # ends with every note released
    sounding = set()
    for m in mid.tracks[0]:
        if m.type == "note_on" and m.velocity > 0:
            sounding.add(m.note)
        elif m.type in ("note_off", "note_on"):
            sounding.discard(m.note)
    assert not sounding


def test_generate_cli_seed_file_and_bad_seeds(tiny_onnx, tmp_path):
    from tests.conftest import SHARED_MIDI

    out = tmp_path / "y.mid"
    ok = runner.invoke(
        app,
        [
            "generate",
            "--model",
            str(tiny_onnx[0]),
            "--seed-file",
            str(SHARED_MIDI / "test-c-major-scale.mid"),
            "--steps",
            "8",
            "--out",
            str(out),
        ],
    )
    assert ok.exit_code == 0, ok.output
    for args, msg in [
        (["--seed-notes", "H9"], "not a note name"),
        (["--seed-file", str(tmp_path / "none.mid")], f"--seed-file {tmp_path / 'none.mid'}: cannot open"),
        (["--seed-file", str(SHARED_MIDI / "test-not-a-midi-file.mid")], "MThd"),
        ([], "exactly one of"),
    ]:
        result = runner.invoke(app, ["generate", "--model", str(tiny_onnx[0]), "--out", str(out), *args])
        assert result.exit_code == 2, (args, result.output)
        assert msg in result.output


def test_generate_refuses_output_paths_it_cannot_write_before_writing_anything(tiny_onnx, tmp_path):
    (tmp_path / "adir").mkdir()
    seed = ["generate", "--model", str(tiny_onnx[0]), "--seed-notes", "C4", "--steps", "4"]
    for args, msg in [
        (["--out", str(tmp_path / "adir")], f"--out {tmp_path / 'adir'} is a folder; give a file name"),
        (["--out", str(tmp_path / "no" / "g.mid")], f"the folder {tmp_path / 'no'} does not exist"),
        (["--out", str(tmp_path / "g.mid"), "--png", str(tmp_path / "no" / "g.png")], "--png"),
    ]:
        result = runner.invoke(app, [*seed, *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and msg in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "g.mid").exists()  # the --png refused before the MIDI file was written


def test_generate_bounds_a_seed_of_absurd_length(tiny_onnx, tmp_path):
    """A 37-byte file whose one note lasts 2**28 beats once took minutes and gigabytes."""
    mid = mido.MidiFile(type=0, ticks_per_beat=1)
    mid.tracks.append(mido.MidiTrack())
    mid.tracks[0] += [
        mido.Message("note_on", note=60, time=0),
        mido.Message("note_off", note=60, time=0x0FFFFFFF),
    ]
    mid.save(tmp_path / "long.mid")
    base = ["generate", "--model", str(tiny_onnx[0]), "--steps", "4", "--out", str(tmp_path / "x.mid")]
    cut = runner.invoke(app, [*base, "--seed-file", str(tmp_path / "long.mid")])
    assert cut.exit_code == 0, cut.output
    assert "1 notes longer than 64 beats (up to 268435455): shortened to 64" in cut.stderr
    long_note = runner.invoke(app, [*base, "--seed-notes", "C4:1000000"])
    assert long_note.exit_code == 2 and "'C4:1000000' lasts more than 64 beats" in long_note.stderr
    many = runner.invoke(app, [*base, "--seed-notes", "C4:0.25 " * 9000])
    assert many.exit_code == 2 and "the seed is 9,000 events long; at most 8,192" in many.stderr


def test_shipped_default_model_generates_in_time(tmp_path):
    from midiseed.runtime.engine import DEFAULT_MODEL
    from midiseed.training.model import PRESETS

    engine = Engine()  # no path: the shipped model
    assert engine.path == DEFAULT_MODEL and engine.info.preset in PRESETS
    assert engine.info.meta["metrics"]["held_out_accuracy"] > 0.5
    out = tmp_path / "x.mid"
    # a seed in mixed note values: the shipped model follows the seed's note rate, so an answer to
    # even quarters may rightly be even quarters
    seed = "C4:0.5 E4:0.5 G4 C5:0.5 B4:0.5 G4:2"
    result = runner.invoke(app, ["generate", "--steps", "64", "--seed-notes", seed, "--out", str(out)])
    assert result.exit_code == 0, result.output
    mid = mido.MidiFile(out)
    t, starts, lengths, sounding = 0, [], [], {}
    for m in mid.tracks[0]:
        t += m.time
        if m.type == "note_on" and m.velocity > 0:
            sounding[m.note] = t
            starts.append(t)
        elif m.type in ("note_on", "note_off") and m.note in sounding:
            lengths.append(t - sounding.pop(m.note))
    assert not sounding
    # rhythm, not the seed project's even 0.5-beat steps: several note lengths and onset gaps
    assert len(set(lengths)) >= 2
    assert len({b - a for a, b in zip(sorted(set(starts)), sorted(set(starts))[1:])}) >= 2
