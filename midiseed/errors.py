"""The one base class for errors a user can cause, and fix.

The CLI catches `UserError` only: it prints the message on one line and exits with status 2.
Anything else that escapes a command is a bug, and shows its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input a user can fix: a missing or unreadable file, a value out of range, no MIDI system.
    The message names the file or key and says what is allowed."""


class BadValue(UserError, ValueError):
    """A value out of its allowed range, or of the wrong shape; the message says what is allowed."""
