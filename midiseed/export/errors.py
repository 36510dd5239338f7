"""Export's user-facing error, importable without TensorFlow."""

from midiseed.errors import UserError


class ExportError(UserError):
    """A run directory or output that cannot be exported; the message says which and why."""
