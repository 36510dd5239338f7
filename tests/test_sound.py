"""The sound path, end to end: FluidSynth (a General MIDI soundfont) on the JACK dummy server, played by
the daemon through `connect_to`, recorded with jack_capture and measured with sox; and `generate --wav`.
Needs Debian's fluidsynth, timgm6mb-soundfont, jack-capture and sox (.ci/run installs them)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from midiseed.runtime.engine import DEFAULT_MODEL
from midiseed.runtime.sound import find_soundfont
from tests.jack import Daemon, Player, wait_for_port


def rms(wav: Path, start: float = 0.0, length: float | None = None) -> float:
    """RMS amplitude (0..1) of a stretch of a sound file, as `sox FILE -n trim START LENGTH stat` says."""
    trim = ["trim", f"{start:.3f}"] + ([f"{length:.3f}"] if length is not None else [])
    out = subprocess.run(["sox", str(wav), "-n", *trim, "stat"], capture_output=True, text=True, timeout=60)
    found = re.search(r"RMS\s+amplitude:\s+([0-9.eE+-]+)", out.stderr)
    assert found, out.stderr
    return float(found.group(1))


def _need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:  # a failure, not a skip: the suite promises this test (.ci/run installs them)
        pytest.fail(f"the sound tests need {', '.join(missing)}: apt-get install fluidsynth jack-capture sox")


@pytest.fixture
def fluidsynth(jack):
    """FluidSynth as a JACK client named fsynth<pid>: its MIDI input and its left/right audio outputs.
    Its shell reads the pipe on stdin (no TCP shell port to collide with), so it lives until that closes."""
    _need("fluidsynth", "jack_capture", "sox", "jack_lsp")
    name = f"fsynth{os.getpid()}"
    names = ["-o", f"audio.jack.id={name}", "-o", f"midi.jack.id={name}"]
    proc = subprocess.Popen(
        ["fluidsynth", "-a", "jack", "-m", "jack", "-g", "1.0", *names, str(find_soundfont())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(f"{name}:midi")
        yield name
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(10)


@pytest.mark.jack
def test_a_call_is_answered_and_sounded_by_fluidsynth(fluidsynth, tmp_path):
    name = f"snd{os.getpid()}"
    daemon = Daemon(
        tmp_path,
        DEFAULT_MODEL,  # the shipped model, as a user hears it
        name,
        connect_to=("midi", f'["{fluidsynth}"]'),  # a part of FluidSynth's port name, as in the README
        bpm=("timing", 120),
        answer_beats=("performance", 4),
    )
    player = Player(name)
    wav = tmp_path / "heard.wav"
    try:
        ports = ["-p", f"{fluidsynth}:left", "-p", f"{fluidsynth}:right"]
        capture = subprocess.Popen(
            ["jack_capture", "--daemon", "-d", "7", *ports, str(wav)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while "jack_capture" not in subprocess.run(["jack_lsp"], capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, "jack_capture did not start"
            time.sleep(0.05)
        started = time.monotonic()
        time.sleep(1.5)  # a second and a half of silence to compare with
        player.phrase([60, 64, 67, 72], 0.15)
        first = player.wait_for_notes(1)[0][0]
        assert capture.wait(15) == 0
    finally:
        player.close()
        stopped = daemon.stop()
    assert stopped == 0
    silence = rms(wav, 0.0, 1.0)
    answer = rms(wav, first - started, 1.5)
    assert answer > 0.002, f"the answer is not heard: RMS {answer:.5f}"
    assert answer > 20 * silence, f"answer RMS {answer:.5f} vs silence {silence:.5f}"


def test_generate_wav_renders_the_continuation_through_fluidsynth(tmp_path):
    _need("fluidsynth", "sox")
    from typer.testing import CliRunner

    from midiseed.cli import app

    args = ["generate", "--seed-notes", "C4 E4 G4", "--steps", "16", "--out", str(tmp_path / "x.mid")]
    result = CliRunner().invoke(app, [*args, "--wav", str(tmp_path / "x.wav")])
    assert result.exit_code == 0, result.output
    assert "through FluidSynth" in result.output
    length = subprocess.run(
        ["soxi", "-D", str(tmp_path / "x.wav")], capture_output=True, text=True, timeout=60
    )
    assert float(length.stdout) > 2.0  # the seed alone is 1.5 beats at 120 bpm; 16 events more follow
    assert rms(tmp_path / "x.wav") > 0.002
    other = [*args[:-1], str(tmp_path / "y.mid"), "--wav", str(tmp_path / "y.wav"), "--soundfont", "none.sf2"]
    missing = CliRunner().invoke(app, other)
    assert missing.exit_code == 2
    assert "soundfont none.sf2 does not exist" in missing.output
    assert not (tmp_path / "y.mid").exists()  # refused before anything was written
