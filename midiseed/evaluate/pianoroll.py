"""A piano-roll PNG of seed and continuation (matplotlib: the [plot] extra, or in [train])."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from midiseed.errors import BadValue
from midiseed.runtime.codec import Grid


def require() -> None:
    """Raise (before anything is written) when matplotlib is missing, naming the smallest install."""
    from importlib.util import find_spec

    if find_spec("matplotlib") is None:
        raise BadValue("--png needs matplotlib: pip install matplotlib (or pip install 'midiseed[plot]')")


def draw(notes: np.ndarray, seed_steps: int, grid: Grid, path: Path) -> None:
    """Seed notes in grey, generated notes in blue, beats on the x axis."""
    require()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spb = grid.steps_per_beat
    fig, ax = plt.subplots(figsize=(max(6, notes[:, 2].max() / spb / 4 if len(notes) else 6), 4))
    for pitch, start, end in np.asarray(notes).tolist():
        color = "0.55" if start < seed_steps else "tab:blue"
        ax.broken_barh([(start / spb, (end - start) / spb)], (pitch - 0.4, 0.8), color=color)
    ax.axvline(seed_steps / spb, color="tab:red", lw=1)
    ax.set_xlabel("beats")
    ax.set_ylabel("MIDI pitch")
    ax.set_title("seed (grey) and continuation (blue)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
