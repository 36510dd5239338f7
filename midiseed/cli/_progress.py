"""The one progress line of the CLI's long commands (data music21, data tokenize), on stderr."""

from __future__ import annotations

import sys
import time


class ProgressLine:
    """`[####....] done/total files ...`: redrawn in place on a terminal at most 4 times a second;
    in a log (not a terminal), a line every 10 s. The last update is always shown."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.shown = 0.0
        self.drawn = False

    def update(self, done: int, total: int, detail: str = "") -> None:
        """Show `done` of `total` files, with the rate, the time left and `detail`."""
        now = time.monotonic()
        if done < total and now - self.shown < (0.25 if self.tty else 10.0):
            return
        self.shown = now
        rate = done / max(now - self.t0, 1e-9)
        left = (total - done) / rate if rate else 0.0
        bar = "#" * (30 * done // max(total, 1))
        line = f"[{bar:<30}] {done}/{total} files, {rate:.0f}/s, {left / 60:.1f} min left"
        line += f", {detail}" if detail else ""
        print("\r" + line if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)
        self.drawn = True

    def close(self) -> None:
        """End the redrawn line (on a terminal)."""
        if self.tty and self.drawn:
            print(file=sys.stderr, flush=True)
