"""Export's user-facing error, importable without TensorFlow."""


class ExportError(Exception):
    """A run directory or output that cannot be exported; the message says which and why."""
