"""Rendering a MIDI file to audio through FluidSynth (an external program) and a General MIDI soundfont.

Everything is checked by `find_renderer` before anything is written, so a missing FluidSynth or
soundfont costs one line and no half-made files.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from midiseed.errors import UserError

# Where Debian/Ubuntu (fluid-soundfont-gm, timgm6mb-soundfont), Fedora/Arch and Homebrew put soundfonts.
SOUNDFONT_DIRS = (
    Path("/usr/share/sounds/sf2"),
    Path("/usr/share/soundfonts"),
    Path("/usr/local/share/soundfonts"),
    Path("/opt/homebrew/share/soundfonts"),
    Path.home() / ".local/share/soundfonts",
)
# Debian's default-GM.sf2 is the alternatives link to the best GM soundfont installed: try it first.
PREFERRED = ("default-GM.sf2", "FluidR3_GM.sf2", "TimGM6mb.sf2")
INSTALL = "apt-get install fluidsynth timgm6mb-soundfont (macOS: brew install fluid-synth)"


class SoundError(UserError):
    """FluidSynth or a soundfont is missing, or rendering failed; the message says what to install."""


@dataclass(frozen=True)
class Renderer:
    """A FluidSynth program and the soundfont it plays with."""

    fluidsynth: str
    soundfont: Path

    def render(self, midi: Path, wav: Path, rate: int = 44100) -> None:
        """Write `wav` from the MIDI file `midi` (as fast as the CPU allows, no audio device)."""
        cmd = [self.fluidsynth, "-ni", "-g", "1.0", "-F", str(wav), "-r", str(rate), str(self.soundfont)]
        result = subprocess.run([*cmd, str(midi)], capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or not wav.is_file():
            last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
            raise SoundError(f"fluidsynth could not render {midi} to {wav}: {last[:200]}")


def find_soundfont(given: Path | None = None) -> Path:
    """The soundfont given (it must exist), else the first General MIDI one found in the usual places."""
    if given is not None:
        if not Path(given).is_file():
            raise SoundError(f"soundfont {given} does not exist (give an .sf2 file with --soundfont)")
        return Path(given)
    for folder in SOUNDFONT_DIRS:
        if not folder.is_dir():
            continue
        for name in PREFERRED:
            if (folder / name).is_file():
                return folder / name
        found = sorted(folder.glob("*.sf2"))
        if found:
            return found[0]
    where = ", ".join(str(d) for d in SOUNDFONT_DIRS[:2])
    raise SoundError(f"no soundfont (.sf2) found in {where}: {INSTALL}, or give one with --soundfont")


def find_renderer(soundfont: Path | None = None) -> Renderer:
    """FluidSynth and a soundfont, or a SoundError naming what to install."""
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None:
        raise SoundError(f"--wav needs FluidSynth, which is not on PATH: {INSTALL}")
    return Renderer(fluidsynth, find_soundfont(soundfont))
