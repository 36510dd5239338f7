"""The daemon's ports on JACK as one client with a C process callback (`_jackmidi.c`).

python-rtmidi (ports.py) opens a JACK client per port, each woken by JACK once a period, and its
input callback runs Python in JACK's real-time thread. Here one client holds the input and the
output; its process thread copies messages between the ports and two lock-free ring buffers and,
when something arrived, writes a byte to the service's wake-up socket; it never takes the GIL.
Named connections (`connect_from`, `connect_to`) are plain JACK connections to our two ports,
looked for again by `maintain()`, instead of a further client each.

Used for the "jack" backend whenever the extension was built; `Ports` (rtmidi) otherwise.
"""

from __future__ import annotations

import logging

from midiseed.daemon.ports import PortError, quiet_fd2

log = logging.getLogger(__name__)

API = 2  # what this file expects of the extension's read(): (arrival time, bytes) pairs


def _checked(module):
    """The extension, unless it was built for another version of this file (None then)."""
    if module is not None and getattr(module, "API", 1) != API:
        log.warning(
            "midiseed's JACK extension was built for an older midiseed: using the rtmidi ports "
            "(`pip install -e .` again builds it anew)"
        )
        return None
    return module


try:
    from midiseed.daemon import _jackmidi
except ImportError:  # not built here (no compiler or no libjack.so.0 at install time)
    _jackmidi = None
_jackmidi = _checked(_jackmidi)


def available() -> bool:
    """Whether the C extension was built and loads."""
    return _jackmidi is not None


class Link:
    """A JACK connection between one of our ports and an existing port that may come and go."""

    def __init__(self, name: str, is_input: bool) -> None:
        self.name, self.is_input = name, is_input  # is_input: it feeds our input
        self.port: str | None = None  # the full name of the port while connected

    def maintain(self, client, ours: tuple[str, str], ports: dict[bool, list[str]]) -> None:
        """Connect when the port is there (JACK keeps the connection), note when it is gone.
        `ports`: the MIDI input (True) and output (False) ports there are now."""
        candidates = [n for n in ports[not self.is_input] if n not in ours]
        found = next((n for n in candidates if n == self.name), None) or next(
            (n for n in candidates if self.name in n), None
        )
        if found is None:
            if self.port is not None:
                log.warning("port %r is gone; will reconnect when it is back", self.name)
                self.port = None
            return
        source, destination = (found, ours[0]) if self.is_input else (ours[1], found)
        if client.connect(source, destination) != 0:
            log.debug("connecting %s to %s failed; will try again", source, destination)
            return
        if self.port != found:
            log.info("connected %s %r", "from" if self.is_input else "to", self.name)
        self.port = found


class JackPorts:
    """Our virtual input and output as one JACK client, plus named connections (`Ports`' interface)."""

    def __init__(
        self,
        client_name: str,
        in_name: str,
        out_name: str,
        connect_from: tuple[str, ...] = (),
        connect_to: tuple[str, ...] = (),
        wake_fd: int = -1,
    ) -> None:
        """`wake_fd`: a non-blocking socket or pipe the process thread writes a byte to when
        messages arrive (the service's clock waits on its other end)."""
        if _jackmidi is None:
            raise PortError("midiseed's JACK extension is not built; use the rtmidi ports")
        self.backend = "jack"
        try:
            with quiet_fd2():  # libjack's own lines about a taken name or no server
                self._client = _jackmidi.Client(client_name, in_name, out_name, wake_fd)
        except OSError as err:
            raise PortError(f"cannot open MIDI ports on jack: {err}") from err
        self.port_names: tuple[str, str] = self._client.port_names
        self.named = [Link(n, True) for n in connect_from] + [Link(n, False) for n in connect_to]
        self.maintain()
        for link in self.named:
            if link.port is None:
                log.warning("port %r is not there (yet); will connect when it appears", link.name)

    def maintain(self) -> None:
        """Look for the named ports: connect the ones that appeared, note the ones that left."""
        if not self.named:
            return
        ports = {inputs: self._client.ports(inputs) for inputs in (True, False)}  # one look for all
        for link in self.named:
            link.maintain(self._client, self.port_names, ports)

    def poll(self) -> list[tuple[float, list[int]]]:
        """Every message that arrived since the last poll, in order of arrival, each with the time
        it arrived (time.monotonic(), to within a period or two: see `_jackmidi.c`)."""
        return self._client.read()

    def send(self, message: list[int]) -> None:
        """To our output, and through JACK's connections to every port connected to it."""
        self._client.send(message)

    @property
    def dropped(self) -> tuple[int, int]:
        """(incoming, outgoing) messages the process thread had no room for."""
        return self._client.dropped

    def close(self) -> None:
        """Deactivate and close the client (idempotent)."""
        self._client.close()
