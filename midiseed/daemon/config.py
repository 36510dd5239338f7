"""The daemon's configuration: config.toml (every key documented there), then the command line.

Every key is declared once below with its type and what is allowed; a bad file names the key and
says what would have been accepted.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from midiseed.errors import UserError
from midiseed.runtime.memory import MAX_MEMORY
from midiseed.runtime.sampling import MAX_ANCHOR


class ConfigError(UserError, ValueError):
    """A configuration value or file that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Config:
    # [model]
    model: str = ""  # ONNX file; "" = the shipped default
    models: tuple[str, ...] = ()  # more models to switch to by CC (model_cc value 1, 2, ...)
    provider: str = "auto"  # auto | cpu | cuda
    # [midi]
    backend: str = "auto"  # auto | alsa | jack | coremidi | windows
    client_name: str = "midiseed"
    in_port: str = "midiseed-in"
    out_port: str = "midiseed-out"
    connect_from: tuple[str, ...] = ()  # existing ports whose notes we also listen to
    connect_to: tuple[str, ...] = ()  # existing ports we also play to
    in_channels: tuple[int, ...] = ()  # 1..16; empty = every channel
    out_channel: int = 1
    velocity: int = 0  # 1..127; 0 = the player's average velocity
    # [timing]
    clock: str = "internal"  # internal | midi
    bpm: float = 120.0
    chord_ms: float = 30.0  # notes starting this close together form one chord
    quantize_start: bool = True  # start answers and the stream in time (False: as soon as ready)
    follow_tempo: bool = True  # internal clock: answer (respond) and stream (continue) at the player's tempo
    realtime: bool = True  # ask for real-time scheduling (SCHED_FIFO) where the system allows it
    # [performance]
    mode: str = "respond"  # respond | continue
    silence_beats: float = 1.0  # respond: a phrase ends after this much silence
    answer_beats: float = 8.0  # respond: length of an answer; 0 = as long as the call
    max_held_beats: float = 32.0  # an input note held longer than this counts as released (stuck key)
    # [steering]  what the answer may play; 0 = follow the phrase heard
    voices: int = 0  # most notes sounding at once (1 = a single line)
    low: int = 0  # lowest pitch (MIDI number)
    high: int = 0  # highest pitch (MIDI number)
    # [decoding]
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0
    no_repeat: int = 0
    loop_guard: int = 32  # no pattern of up to this many events plays 1.5 times in a row (0 = off)
    memory: float = 0.0  # weight of the piece's own memory (midiseed.runtime.memory; 0 = off)
    pitch_guard: bool = False  # respond answers: in two voices or more, the loop guard hears chords cycling
    pitch_guard_continue: bool = True  # the same for continue mode's stream
    anchor: int = 0  # events into an answer after which it stays where the phrase was (0 = off)
    random_seed: int = 0
    # [cc]  controller numbers on the input; 0 = not used
    panic_cc: int = 119
    end_call_cc: int = 85
    mode_cc: int = 86
    temperature_cc: int = 87
    top_k_cc: int = 88
    no_repeat_cc: int = 89
    reload_cc: int = 90
    model_cc: int = 91
    voices_cc: int = 102
    low_cc: int = 103
    high_cc: int = 104
    loop_guard_cc: int = 105
    memory_cc: int = 106
    pitch_guard_cc: int = 107
    anchor_cc: int = 108
    # [log]
    log_level: str = "info"  # debug | info | warning | error
    status_seconds: float = 0.0  # a status line this often (0 = off)
    record: str = ""  # folder to record every session to as .mid ("" = off)
    status_socket: str = (
        ""  # where `midiseed status` asks; "" = $XDG_RUNTIME_DIR (or /tmp)/midiseed-NAME.sock
    )


SECTIONS = {
    "model": ["model", "models", "provider"],
    "midi": [
        "backend",
        "client_name",
        "in_port",
        "out_port",
        "connect_from",
        "connect_to",
        "in_channels",
        "out_channel",
        "velocity",
    ],
    "timing": ["clock", "bpm", "chord_ms", "quantize_start", "follow_tempo", "realtime"],
    "performance": ["mode", "silence_beats", "answer_beats", "max_held_beats"],
    "steering": ["voices", "low", "high"],
    "decoding": [
        "temperature",
        "top_k",
        "no_repeat",
        "loop_guard",
        "memory",
        "pitch_guard",
        "pitch_guard_continue",
        "anchor",
        "random_seed",
    ],
    "cc": [
        "panic_cc",
        "end_call_cc",
        "mode_cc",
        "temperature_cc",
        "top_k_cc",
        "no_repeat_cc",
        "reload_cc",
        "model_cc",
        "voices_cc",
        "low_cc",
        "high_cc",
        "loop_guard_cc",
        "memory_cc",
        "pitch_guard_cc",
        "anchor_cc",
    ],
    "log": ["log_level", "status_seconds", "record", "status_socket"],
}
STEERING = tuple(SECTIONS["steering"])  # Performer.steer, in that order
LIVE_DECODING = tuple(k for k in SECTIONS["decoding"] if f"{k}_cc" in SECTIONS["cc"])  # the ones a CC sets


def file_pitch_guard(cfg: Config, mode: str) -> bool:
    """The pitch guard the config asks for in `mode`: `pitch_guard` for respond answers,
    `pitch_guard_continue` for continue mode's stream."""
    return cfg.pitch_guard_continue if mode == "continue" else cfg.pitch_guard


CHOICES = {
    "provider": ("auto", "cpu", "cuda"),
    "backend": ("auto", "alsa", "jack", "coremidi", "windows"),
    "clock": ("internal", "midi"),
    "mode": ("respond", "continue"),
    "log_level": ("debug", "info", "warning", "error"),
}
RANGES: dict[str, tuple[float, float]] = {
    "out_channel": (1, 16),
    "velocity": (0, 127),
    "bpm": (20, 400),
    "chord_ms": (0, 500),
    "silence_beats": (0.25, 64),
    "answer_beats": (0, 1024),
    "voices": (0, 127),
    "low": (0, 127),
    "high": (0, 127),
    "max_held_beats": (1, 10_000),
    "temperature": (0, 10),
    "top_k": (0, 272),
    "no_repeat": (0, 64),
    "loop_guard": (0, 64),
    "memory": (0, MAX_MEMORY),
    "anchor": (0, MAX_ANCHOR),
    "random_seed": (0, 2**31),
    "status_seconds": (0, 86_400),
    **{k: (0, 127) for k in SECTIONS["cc"]},
}


def _check(key: str, value: Any, where: str) -> Any:
    default = getattr(Config(), key)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}{key} must be true or false, got {value!r}")
    elif isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}{key} must be a list, got {value!r}")
        if key == "in_channels":
            if not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 16 for c in value):
                raise ConfigError(f"{where}{key} must list MIDI channels 1..16, got {value!r}")
        elif not all(isinstance(s, str) and s for s in value):
            what = "model files" if key == "models" else "port names"
            raise ConfigError(f"{where}{key} must be a list of {what}, got {value!r}")
        value = tuple(value)
    elif isinstance(default, int | float):
        ok_types = (int,) if isinstance(default, int) else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            kind = "a whole number" if isinstance(default, int) else "a number"
            raise ConfigError(f"{where}{key} must be {kind}, got {value!r}")
        lo, hi = RANGES.get(key, (float("-inf"), float("inf")))
        if not lo <= value <= hi:
            raise ConfigError(f"{where}{key} must be in {lo:g}..{hi:g}, got {value!r}")
        value = type(default)(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}{key} must be a string, got {value!r}")
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"{where}{key} must be one of {', '.join(CHOICES[key])}, got {value!r}")
    return value


def load(path: Path | None) -> Config:
    """Read a config.toml (None: the defaults). Unknown sections or keys are errors."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
    values: dict[str, Any] = {}
    for section, body in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]; sections are {', '.join(SECTIONS)}")
        if not isinstance(body, dict):
            raise ConfigError(
                f"{path}: {section} = {body!r} is not a section: write [{section}] and its keys under it"
            )
        for key, value in body.items():
            if key not in SECTIONS[section]:
                raise ConfigError(
                    f"{path}: unknown key [{section}] {key}; [{section}] takes {', '.join(SECTIONS[section])}"
                )
            values[key] = _check(key, value, f"{path}: [{section}] ")
    low, high = values.get("low", 0), values.get("high", 0)
    if low and high and low > high:
        raise ConfigError(f"{path}: [steering] low must not be above high, got low = {low}, high = {high}")
    cfg = Config(**values)
    taken: dict[int, str] = {}
    for key in SECTIONS["cc"]:  # one controller, one job: the first listed would take it silently
        number = getattr(cfg, key)
        if number and number in taken:
            raise ConfigError(
                f"{path}: [cc] {key} and {taken[number]} are both CC {number}; give each its own"
            )
        taken[number] = key
    return cfg


def override(cfg: Config, **options: Any) -> Config:
    """Command-line values (None = not given) win over the file."""
    known = {f.name for f in fields(Config)}
    given = {k: _check(k, v, "--") for k, v in options.items() if v is not None and k in known}
    return replace(cfg, **given)
