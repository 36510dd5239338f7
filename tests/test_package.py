"""The package as a user installs it: a wheel built from the tracked files, installed into a fresh
virtual environment (dependencies from the package index, pip's cache reused), run from another folder.
Plus the command line's answers to a mistyped option and to a missing MIDI system."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from midiseed.runtime.midifile import read_notes

ROOT = Path(__file__).resolve().parents[1]


def _run(
    cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built (no build dependencies but setuptools) from a copy of the files git tracks."""
    tmp = tmp_path_factory.mktemp("wheel")
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
    assert listed.returncode == 0, listed.stderr
    src = tmp / "src"
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():  # a file deleted but not yet committed is listed too
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)], tmp
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert "deprecat" not in (built.stdout + built.stderr).lower()  # e.g. a TOML-table project.license
    (path,) = (tmp / "dist").glob("midiseed-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv (no system site-packages, so a missing dependency shows) with only the wheel."""
    where = tmp_path_factory.mktemp("venv") / "v"
    made = _run([sys.executable, "-m", "venv", str(where)], where.parent)
    assert made.returncode == 0, made.stderr
    installed = _run([str(where / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], where.parent)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return where


def test_wheel_holds_the_models_the_config_and_honest_metadata(wheel):
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        meta = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    shipped = {
        "midiseed/models/default.onnx",
        "midiseed/models/chorale.onnx",
        "midiseed/models/MODEL_CARD.md",
    }
    assert shipped | {"midiseed/config.toml"} <= names
    assert "License-Expression: MIT" in meta
    assert "License-File: LICENSE" in meta and any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "Requires-Python: >=3.11" in meta
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist: onnxruntime")]
    # the CPU build by default; the GPU build only with the [gpu] extra
    assert "Requires-Dist: onnxruntime>=1.18" in requires
    assert all('extra == "gpu"' in line for line in requires if "onnxruntime-gpu" in line)


@pytest.mark.slow
def test_installed_wheel_generates_and_serves_help_from_another_folder(venv, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    midiseed = str(venv / "bin" / "midiseed")
    gen = _run(
        [midiseed, "generate", "--seed-notes", "C4 E4 G4", "--steps", "16", "--out", "x.mid"], elsewhere
    )
    assert gen.returncode == 0, gen.stdout + gen.stderr
    assert "default.onnx" in gen.stdout
    notes = read_notes(elsewhere / "x.mid")
    assert len(notes) > 3  # the three seed notes and what the shipped model added
    assert {60, 64, 67} <= {int(p) for p in notes[:, 0]}

    helped = _run([midiseed, "serve", "--help"], elsewhere)
    assert helped.returncode == 0, helped.stderr
    assert "--model" in helped.stdout and "--provider" in helped.stdout

    # the model and config are found inside site-packages, not in a checkout
    where = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from midiseed.runtime.engine import DEFAULT_MODEL\n"
            "from midiseed.cli.serve import DEFAULT_CONFIG\n"
            "print(DEFAULT_MODEL.is_file(), DEFAULT_CONFIG.is_file(), DEFAULT_MODEL)",
        ],
        elsewhere,
    )
    assert where.stdout.startswith("True True ") and "site-packages" in where.stdout, (
        where.stdout + where.stderr
    )


@pytest.mark.slow
def test_installed_wheel_names_the_smallest_install_before_writing_anything(venv, tmp_path):
    midiseed = str(venv / "bin" / "midiseed")
    seed = ["generate", "--seed-notes", "C4 E4 G4", "--steps", "8", "--out", "y.mid"]
    # the core install has no matplotlib: --png must stop before y.mid exists
    png = _run([midiseed, *seed, "--png", "y.png"], tmp_path)
    assert png.returncode == 2
    assert "pip install matplotlib" in png.stderr and "[train]" not in png.stderr
    assert len(png.stderr.strip().splitlines()) == 1
    # no FluidSynth on PATH (only the venv's own programs): --wav stops before anything is written
    env = {**os.environ, "PATH": str(venv / "bin")}
    wav = _run([midiseed, *seed, "--wav", "y.wav"], tmp_path, env=env)
    assert wav.returncode == 2
    assert "FluidSynth" in wav.stderr and "apt-get install fluidsynth" in wav.stderr
    assert not (tmp_path / "y.mid").exists() and not (tmp_path / "y.png").exists()
    assert not (tmp_path / "y.wav").exists()
    # a shipped model by name; an unknown name lists the shipped ones
    for name in ("default", "chorale"):
        named = _run([midiseed, *seed, "--model", name], tmp_path)
        assert named.returncode == 0, named.stderr
    unknown = _run([midiseed, *seed, "--model", "nosuchmodel"], tmp_path)
    assert unknown.returncode == 2
    assert "no shipped model named 'nosuchmodel'; shipped: chorale, default" in unknown.stderr
    # training, export and the music21 export need the [train] extra: one line, not a traceback
    for args in (
        ["train", "--data", ".", "--out", "run"],
        ["export", "run", "--out", "m.onnx"],
        ["data", "music21", "--out", "m21"],
    ):
        out = _run([midiseed, *args], tmp_path)
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith("error: midiseed ") and "pip install 'midiseed[train]'" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not any((tmp_path / name).exists() for name in ("run", "m.onnx", "m21"))


@pytest.mark.slow
def test_installed_wheel_is_cpu_only_and_says_how_to_get_cuda(venv, tmp_path):
    probe = (
        "import onnxruntime as ort\n"
        "from midiseed.runtime.engine import Engine, ModelError\n"
        "print(ort.get_available_providers())\n"
        "try:\n    Engine(provider='cuda')\nexcept ModelError as err:\n    print(err)\n"
    )
    out = _run([str(venv / "bin" / "python"), "-c", probe], tmp_path)
    assert out.returncode == 0, out.stderr
    providers, message = out.stdout.strip().splitlines()
    assert "CUDAExecutionProvider" not in providers
    assert "pip install --force-reinstall --no-deps onnxruntime-gpu" in message
    listed = _run([str(venv / "bin" / "python"), "-m", "pip", "list"], tmp_path)
    assert "onnxruntime-gpu" not in listed.stdout


def test_unknown_option_is_refused_with_status_2_and_no_far_fetched_suggestion():
    out = _run([sys.executable, "-m", "midiseed", "serve", "--bogus"], ROOT)
    assert out.returncode == 2
    assert "No such option: --bogus" in out.stderr
    assert "--verbose" not in out.stderr  # click's suggestion, alike only in the dashes
    near = _run([sys.executable, "-m", "midiseed", "serve", "--verbos"], ROOT)
    assert near.returncode == 2 and "--verbose" in near.stderr  # a real typo still gets its suggestion


def test_a_value_out_of_range_or_a_missing_option_is_one_line_with_status_2():
    for args, says in (
        (["train", "--data", "x", "--out", "y", "--epochs", "0"], "Invalid value for '--epochs'"),
        (["generate", "--seed-notes", "C4"], "Missing option '--out'"),
    ):
        out = _run([sys.executable, "-m", "midiseed", *args], ROOT)
        assert out.returncode == 2
        assert out.stderr.startswith(f"error: {says}") and out.stderr.count("\n") == 1, out.stderr
        assert out.stdout == ""
    bare = _run([sys.executable, "-m", "midiseed"], ROOT)  # no command: the help, as before
    assert bare.returncode == 2 and "Usage: midiseed" in bare.stdout + bare.stderr


def test_ports_without_any_midi_system_is_quiet_and_says_so(tmp_path):
    # a JACK server name nobody runs: libjack's C-level complaints must not reach the terminal
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"midiseed-none-{os.getpid()}"}
    out = _run([sys.executable, "-m", "midiseed", "ports"], tmp_path, env=env, timeout=60)
    assert out.returncode == 0
    assert out.stderr == ""
    assert "jack: not available (no server running)" in out.stdout


def test_the_cli_wrapper_ends_an_abort_and_a_path_error_in_one_line(capsys):
    import errno

    import typer

    from midiseed.cli._app import _Group, user_errors

    app = typer.Typer(cls=_Group)

    @app.command()
    def ask() -> None:
        raise typer.Abort()

    @app.command()
    @user_errors
    def move() -> None:
        raise OSError(errno.EEXIST, "File exists", "a.mid", None, "b.mid")

    for args, status, said in (
        (["ask"], 1, "Aborted!\n"),
        (["move"], 2, "error: a.mid -> b.mid: File exists\n"),
    ):
        with pytest.raises(SystemExit) as done:
            app(args)
        assert done.value.code == status and capsys.readouterr().err == said
