"""The one base class for errors a user can cause, and fix.

The CLI catches `UserError` only: it prints the message on one line and exits with status 2.
Anything else that escapes a command is a bug, and shows its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input a user can fix: a missing or unreadable file, a value out of range, no MIDI system.
    The message names the file or key and says what is allowed."""


class BadValue(UserError, ValueError):
    """A value out of its allowed range, or of the wrong shape; the message says what is allowed."""


def output_file(path, option: str) -> None:
    """BadValue (before anything is written) unless `path` can be written as a file: not a folder,
    and in a folder that exists."""
    path = Path(path)
    if path.is_dir():
        raise BadValue(f"{option} {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise BadValue(f"{option} {path}: the folder {path.parent} does not exist")


def output_folder(path, option: str) -> None:
    """BadValue (before anything is written) when `path` exists and is not a folder, or sits under
    a file."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise BadValue(f"{option} {path}: {p} is a file, not a folder")
            return


def require_extra(command: str, modules: tuple[str, ...], extra: str = "train") -> None:
    """UserError (one line, before anything starts) when a package an optional extra brings is not
    installed: the core install is the daemon, without TensorFlow or music21."""
    from importlib.util import find_spec

    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        raise UserError(
            f"{command} needs {', '.join(missing)}, which the daemon's install leaves out: "
            f"pip install 'midiseed[{extra}]' (from a checkout: pip install -e '.[{extra}]')"
        )
