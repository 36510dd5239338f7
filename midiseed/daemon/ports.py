"""MIDI ports through python-rtmidi: the one place that imports rtmidi.

Virtual ports on ALSA, JACK and CoreMIDI; on Windows, which has none, existing ports named in
the config (e.g. loopMIDI's). Raw bytes in and out: parsing is the performer's job, so a garbage
message costs a counter, never an exception.

Input arrives through rtmidi's callback, so the service can sleep until a message comes instead
of polling. On JACK that callback runs in JACK's real-time process thread and must take the GIL
there, which is why it is as small as it can be: it appends the bytes to a queue and wakes the
service (`Clock.wake`: a flag and at most one byte on a local socket), nothing else. The GIL is
then held up only by the main thread's bytecode between switches (the service sets a short
switch interval). Closing is where a callback once deadlocked (closing a JACK client waits for
its process thread, which waited for the GIL the closer held): every callback is cancelled first,
and the GIL is let go for a moment so that one already under way finishes, before any port closes.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable

from midiseed.errors import UserError

log = logging.getLogger(__name__)


QUEUE_SIZE = 16384  # messages rtmidi keeps (only before the callback is set, or after it is cancelled)
SETTLE_SECONDS = 0.02  # GIL let go between cancelling the callbacks and closing: one under way ends
# rtmidi frees a cancelled callback's (function, data) tuple at once, while a callback already
# waiting for the GIL in JACK's thread will still read it: such tuples are kept here, for good
_CANCELLED: list[object] = []


@contextlib.contextmanager
def quiet_fd2():
    """libjack prints "Cannot connect to server socket...", "Client name = ... conflits with another
    one" and the like from C straight to fd 2, where sys.stderr cannot catch it: fd 2 itself points
    at /dev/null meanwhile. midiseed says what went wrong in one line of its own."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class PortError(UserError):
    """No usable MIDI system, or a port that cannot be opened; the message says what to do."""


def _rtmidi():
    os.environ.setdefault("JACK_NO_START_SERVER", "1")  # never start a JACK server behind the user's back
    import rtmidi

    return rtmidi


def _api(name: str) -> int:
    rtmidi = _rtmidi()
    return {
        "alsa": rtmidi.API_LINUX_ALSA,
        "jack": rtmidi.API_UNIX_JACK,
        "coremidi": rtmidi.API_MACOSX_CORE,
        "windows": rtmidi.API_WINDOWS_MM,
    }[name]


def backend_works(name: str) -> bool:
    """Whether this MIDI system is compiled in and answering (ALSA: /dev/snd/seq; JACK: a running server)."""
    rtmidi = _rtmidi()
    if _api(name) not in rtmidi.get_compiled_api():
        return False
    if name == "alsa" and not os.path.exists("/dev/snd/seq"):
        return False
    try:
        probe = rtmidi.MidiIn(_api(name), name="midiseed-probe")
    except Exception:  # rtmidi raises SystemError/RtMidiError when the system is not there
        return False
    probe.delete()
    return True


def choose_backend(wanted: str) -> str:
    """The backend to use: `wanted`, or for auto the first that works here."""
    if wanted != "auto":
        if not backend_works(wanted):
            raise PortError(f"MIDI backend {wanted} is not available here; {_hint()}")
        return wanted
    order = {"darwin": ["coremidi"], "win32": ["windows"]}.get(sys.platform, ["alsa", "jack"])
    for name in order:
        if backend_works(name):
            return name
    raise PortError(f"no MIDI system found; {_hint()}")


def _hint() -> str:
    if sys.platform == "darwin":
        return "CoreMIDI should always be there: check that python-rtmidi is installed"
    if sys.platform == "win32":
        return "install loopMIDI, create ports named as in config.toml, and use --backend windows"
    return (
        "load ALSA's sequencer (modprobe snd-seq) or start a JACK server "
        "(e.g. `jackd -d dummy` with Debian's jackd2)"
    )


def _find(names: list[str], wanted: str) -> int:
    for i, name in enumerate(names):
        if wanted == name or wanted in name:
            return i
    raise PortError(f"no MIDI port named {wanted!r}; ports now: {', '.join(names) or 'none'}")


class Named:
    """A connection to an existing port (a keyboard, a DAW's input) that may come and go."""

    def __init__(
        self, name: str, is_input: bool, api: int, client_name: str, on_message: Callable | None = None
    ) -> None:
        self.name, self.is_input, self.api, self.client_name = name, is_input, api, client_name
        self.on_message = on_message  # an input's rtmidi callback
        self.port = None  # the open rtmidi object while connected

    def _new(self):
        rtmidi = _rtmidi()
        if self.is_input:
            port = rtmidi.MidiIn(self.api, name=self.client_name, queue_size_limit=QUEUE_SIZE)
            port.ignore_types(sysex=False, timing=False, active_sense=True)
            return port
        return rtmidi.MidiOut(self.api, name=f"{self.client_name}-to")

    def maintain(self, probe) -> None:
        """Connect when the port is there, let go when it is gone; both logged."""
        names = probe.get_ports()
        present = any(self.name == n or self.name in n for n in names)
        if self.port is not None and not present:
            log.warning("port %r is gone; will reconnect when it is back", self.name)
            _close(self.port)
            self.port = None
        elif self.port is None and present:
            port = self._new()
            if self.is_input and self.on_message is not None:
                port.set_callback(self.on_message)
            try:
                port.open_port(_find(port.get_ports(), self.name))
            except Exception as err:  # it vanished again between the two looks
                _close(port)
                log.debug("connecting to %r: %s", self.name, err)
                return
            self.port = port
            log.info("connected %s %r", "from" if self.is_input else "to", self.name)


def _cancel(port) -> None:
    """Stop the input callback (an output has none); its tuple is kept, see _CANCELLED."""
    if not hasattr(port, "cancel_callback"):
        return
    _CANCELLED.extend(r for r in gc.get_referents(port) if isinstance(r, tuple) and len(r) == 2)
    try:
        port.cancel_callback()
    except Exception as err:  # closing must go on for every port
        log.debug("cancelling a callback: %s", err)


def _close(port) -> None:
    """Cancel the callback, let one under way finish, close."""
    _cancel(port)
    _close_now([port])


def _close_now(ports: list) -> None:
    if any(hasattr(p, "cancel_callback") for p in ports):
        time.sleep(SETTLE_SECONDS)  # no GIL held: a callback already waiting for it runs and ends
    for port in ports:
        try:
            port.close_port()
            port.delete()
        except Exception as err:  # closing must go on for every port
            log.debug("closing a port: %s", err)


class Ports:
    """Our virtual input and output, which stay up throughout, plus connections to existing ports
    that survive those ports disappearing and coming back (see `maintain`). Closing is idempotent."""

    def __init__(
        self,
        backend: str,
        client_name: str,
        in_name: str,
        out_name: str,
        connect_from: tuple[str, ...] = (),
        connect_to: tuple[str, ...] = (),
        wake: Callable[[], None] = lambda: None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        """`wake` is called (from rtmidi's thread) after each message is queued for `poll()`,
        stamped with `now()` (the service's clock) as it arrives."""
        rtmidi = _rtmidi()
        self.backend = backend
        api = _api(backend)
        self._ins: list = []
        self._outs: list = []
        self._inbox: deque[tuple[float, list[int]]] = deque()
        self._wake, self._now = wake, now
        self.named = [Named(n, True, api, client_name, self._arrived) for n in connect_from]
        self.named += [Named(n, False, api, client_name) for n in connect_to]
        try:
            midi_in = rtmidi.MidiIn(api, name=client_name, queue_size_limit=QUEUE_SIZE)
            midi_in.ignore_types(sysex=False, timing=False, active_sense=True)
            midi_in.set_callback(self._arrived)  # before the port opens: nothing waits in rtmidi's queue
            self._ins.append(midi_in)
            if backend == "windows":
                midi_in.open_port(_find(midi_in.get_ports(), in_name))
            else:
                midi_in.open_virtual_port(in_name)
            # JACK and ALSA make each rtmidi object its own client: give the output its own stable name
            midi_out = rtmidi.MidiOut(api, name=f"{client_name}-out")
            if backend == "windows":
                midi_out.open_port(_find(midi_out.get_ports(), out_name))
            else:
                midi_out.open_virtual_port(out_name)
            self._outs.append(midi_out)
        except PortError:
            self.close()
            raise
        except Exception as err:  # rtmidi's errors: a port name taken, the server gone
            self.close()
            raise PortError(f"cannot open MIDI ports on {backend}: {err}") from err
        self.maintain()
        for named in self.named:
            if named.port is None:
                log.warning("port %r is not there (yet); will connect when it appears", named.name)

    def maintain(self) -> None:
        """Look for the named ports: connect the ones that appeared, let go of the ones that left."""
        if not self.named:
            return
        for named in self.named:
            named.maintain(self._ins[0] if named.is_input else self._outs[0])

    def _arrived(self, event: tuple[list[int], float], _data: object = None) -> None:
        # rtmidi's callback, in JACK's real-time thread: queue and wake, nothing more (module docstring)
        self._inbox.append((self._now(), event[0]))
        self._wake()

    def poll(self) -> list[tuple[float, list[int]]]:
        """Every message that arrived since the last poll, in order of arrival, each with the time
        it arrived (the `now` it was given)."""
        inbox, out = self._inbox, []
        while inbox:
            out.append(inbox.popleft())
        return out

    def send(self, message: list[int]) -> None:
        """To our output and every connected named one. Each is tried: one that fails must not keep
        a note-off from the others (in a panic, the synth on a named port would keep its notes).
        A named port's failure is only logged (maintain() will notice it gone); our own output's
        is raised after the others have had the message."""
        error: Exception | None = None
        for out in self._outs:
            try:
                out.send_message(message)
            except Exception as err:  # rtmidi's errors: raised below, once every output had its try
                error = error or err
        for named in self.named:
            if not named.is_input and named.port is not None:
                try:
                    named.port.send_message(message)
                except Exception as err:  # a cable pulled mid-note: maintain() will notice
                    log.debug("sending to %r: %s", named.name, err)
        if error is not None:
            raise error

    def close(self) -> None:
        """Cancel every callback, then close every port (see the module docstring for the order)."""
        ports = self._ins + self._outs + [n.port for n in self.named if n.port is not None]
        for port in ports:
            _cancel(port)
        _close_now(ports)
        for named in self.named:
            named.port = None
        self._ins, self._outs = [], []


def list_ports(
    client_name: str = "midiseed", in_port: str = "midiseed-in", out_port: str = "midiseed-out"
) -> dict:
    """Every compiled-in backend, from the user's side: {"play_into": our input, "listen_to": our
    output (each [] while no daemon runs), "sources": other ports to play from (keyboards),
    "destinations": other ports to play to (synths)}; or a string saying why it is unavailable.
    rtmidi's MidiIn lists the ports one can read from (sources, our output among them); MidiOut
    the ports one can write to."""

    def ours(name: str, client: str, port: str) -> bool:
        # JACK: "client:port"; ALSA: "client:port 128:0"; CoreMIDI: the port name alone
        # Windows: "port N" (loopMIDI's port, numbered by rtmidi)
        return name.split(" ")[0] == f"{client}:{port}" or port in (name, name.rsplit(" ", 1)[0])

    def helper(name: str) -> bool:
        return name.split(":")[0] in ("midiseed-ports", f"{client_name}-to")

    rtmidi = _rtmidi()
    names = {_api(n): n for n in ("alsa", "jack", "coremidi", "windows")}
    out: dict[str, dict[str, list[str]] | str] = {}
    for api in rtmidi.get_compiled_api():
        name = names.get(api)
        if name is None:
            continue
        with quiet_fd2():
            works = backend_works(name)
            if works:
                midi_in = rtmidi.MidiIn(api, name="midiseed-ports")
                midi_out = rtmidi.MidiOut(api, name="midiseed-ports")
                readable, writable = midi_in.get_ports(), midi_out.get_ports()
                midi_in.delete()
                midi_out.delete()
        if not works:
            out[name] = (
                "not available (" + ("no /dev/snd/seq" if name == "alsa" else "no server running") + ")"
            )
            continue
        play_into = [p for p in writable if ours(p, client_name, in_port)]
        # our output: its own client under rtmidi, our one client under the JACK extension
        listen_to = [
            p for p in readable if ours(p, f"{client_name}-out", out_port) or ours(p, client_name, out_port)
        ]
        out[name] = {
            "play_into": play_into,
            "listen_to": listen_to,
            # not to offer: our own ports, the probe's, and the client that plays to connect_to ports
            "sources": [p for p in readable if p not in listen_to and not helper(p)],
            "destinations": [p for p in writable if p not in play_into and not helper(p)],
        }
    return out


def panic(backend: str, port_name: str) -> int:
    """Silence whatever listens on an existing port: sustain off, All Sound Off, All Notes Off and a
    note-off for every key, on all 16 channels (for after a `kill -9`). Returns messages sent."""
    rtmidi = _rtmidi()
    backend = choose_backend(backend)
    out = rtmidi.MidiOut(_api(backend), name="midiseed-panic")
    try:
        out.open_port(_find(out.get_ports(), port_name))
        messages = [[0xB0 | ch, control, 0] for ch in range(16) for control in (64, 120, 123)]
        messages += [[0x80 | ch, pitch, 0] for ch in range(16) for pitch in range(128)]
        for i, message in enumerate(messages):  # the controllers first: most synths need nothing more
            out.send_message(message)
            if i % 8 == 7:
                time.sleep(0.002)  # JACK passes ~20 events a 64-frame period and drops the rest
        sent = len(messages)
        time.sleep(0.1)
        return sent
    finally:
        out.close_port()
        out.delete()
