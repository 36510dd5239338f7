"""The `midiseed` command line. Only this layer prints for people; everything below raises or logs.

Heavy imports (TensorFlow, onnxruntime, music21) happen inside the commands that need them,
so `midiseed --help` and the daemon never pay for training's dependencies. Each module registers
its commands on the one app.
"""

from midiseed.cli import bench, data, play, serve, train  # noqa: F401  (registers the commands)
from midiseed.cli._app import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry point
    app()
