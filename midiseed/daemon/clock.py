"""Time for the service: what time it is, and a wait until a deadline that input cuts short.

The service sleeps until the next due note or timer, and an arriving message (or a signal) wakes
it at once: an idle daemon costs (nearly) no CPU, and a note played is handled as soon as it
arrives. The tests pass a fake clock with the same three methods, so the loop runs on made-up
time with no sleeps.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from typing import Protocol


class Clock(Protocol):
    """What the service needs of time."""

    def now(self) -> float:
        """Seconds, monotonic."""
        ...

    def wait_until(self, deadline: float, spin: float = 0.0) -> None:
        """Return at `deadline`, or earlier once `wake()` was called (since the last wait returned)."""
        ...

    def wake(self) -> None:
        """Cut the current or next wait short; callable from any thread, never blocks."""
        ...


class SystemClock:
    """time.monotonic, and a wait on one end of a socket pair that `wake()` writes a byte to.

    `wake()` runs in rtmidi's input callback, i.e. in JACK's real-time thread: it only sets a flag
    and, once per wait, sends one byte (a non-blocking send on a local socket, never a lock).
    A socket pair rather than a pipe or an eventfd: select() takes it on every system we run on.
    The JACK extension's process thread writes its byte straight to `wake_fd()` instead; that
    byte ends a sleep at once, and one that comes during the last 0.2 ms spun before a due note
    ends the next wait.
    """

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._pending = False  # a wake-up byte is on its way: later wakes need not send another

    @staticmethod
    def now() -> float:
        """time.monotonic()."""
        return time.monotonic()

    def wake_fd(self) -> int:
        """The socket end `wake()` writes to, for a waker outside Python (the JACK extension's
        process thread writes a byte there itself)."""
        return self._w.fileno()

    def wake(self) -> None:
        """Cut the wait short (see the class docstring for why this is all it does)."""
        if self._pending:
            return
        self._pending = True
        with contextlib.suppress(OSError):  # full (a byte is waiting anyway) or closed (stopping)
            self._w.send(b"\0")

    def wait_until(self, deadline: float, spin: float = 0.0) -> None:
        """Sleep in select() until `spin` seconds before the deadline, then spin the rest (sleeps
        overshoot by ~0.1 ms); a wake ends either at once."""
        left = deadline - time.monotonic()
        if left > spin:
            ready, _, _ = select.select([self._r], [], [], left - spin)
            if ready:
                self._drain()
                return
        while time.monotonic() < deadline:
            if self._pending:
                self._drain()
                return
            time.sleep(0)  # lets the input callback take the GIL while we spin

    def _drain(self) -> None:
        # the byte first, then the flag: a wake in between finds the flag still set and sends
        # nothing, but its message is already queued and the service reads the queue next
        try:
            while self._r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self._pending = False

    def close(self) -> None:
        """Close the socket pair (a late wake() is then ignored)."""
        self._r.close()
        self._w.close()
