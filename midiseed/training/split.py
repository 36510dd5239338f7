"""Which files train, which validate, which test: a split by file, decided by each file's name.

A file's side depends on a hash of its relative path only, so adding files to a corpus never
moves another file across (the hash is crc32, the one the first runs used: a file they held out
is still validation). Validation makes every decision (early stopping, the epoch kept); test is
recorded and never used in training, so its figures are honest.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from midiseed.errors import BadValue

BUCKETS = 10_000


@dataclass(frozen=True)
class Split:
    """Relative paths of the files on each side, each list sorted."""

    train: list[str]
    validation: list[str]
    test: list[str]

    def to_json(self) -> dict:
        """split.json: the three lists, plus "held_out" (= validation) for readers of older runs."""
        return {
            "train": self.train,
            "validation": self.validation,
            "test": self.test,
            "held_out": self.validation,
            "rule": f"crc32(path) % {BUCKETS} / {BUCKETS}: validation below --val-fraction, "
            "test in the next --test-fraction, train above",
        }

    @classmethod
    def from_json(cls, data: dict) -> Split:
        """From split.json, also of runs made before there was a test split."""
        return cls(
            list(data.get("train", [])),
            list(data.get("validation", data.get("held_out", []))),
            list(data.get("test", [])),
        )

    def side(self, name: str) -> list[str]:
        """The list called `name`: train, validation or test."""
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]


def position(path: str) -> float:
    """Where a file falls in [0, 1): a hash of its relative path."""
    return (zlib.crc32(path.encode()) % BUCKETS) / BUCKETS


def split_files(paths: list[str], val_fraction: float, test_fraction: float) -> Split:
    """Split by file. Validation: position below val_fraction; test: the next test_fraction; the
    rest train. A small corpus whose hashes leave a side empty lends it one file: validation the
    lowest-placed file (with 2 or more files), train the highest, and test the lowest-placed
    training file when test_fraction > 0 and train keeps another."""
    if not 0 < val_fraction < 1:
        raise BadValue(f"validation fraction must lie between 0 and 1, got {val_fraction}")
    if not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise BadValue(
            f"test fraction must be at least 0 and leave files to train on (validation {val_fraction}"
            f" + test {test_fraction} must stay below 1)"
        )
    pos = {p: position(p) for p in paths}
    ranked = sorted(paths, key=lambda p: (pos[p], p))
    side = {p: "validation" if pos[p] < val_fraction else "train" for p in paths}
    for p in paths:
        if val_fraction <= pos[p] < val_fraction + test_fraction:
            side[p] = "test"
    if "validation" not in side.values() and len(paths) >= 2:
        side[ranked[0]] = "validation"
    if "train" not in side.values() and len(paths) >= 2:
        side[ranked[-1]] = "train"
    trains = [p for p in ranked if side[p] == "train"]
    if test_fraction > 0 and "test" not in side.values() and len(trains) >= 2:
        side[trains[0]] = "test"
    pick = lambda name: sorted(p for p in paths if side[p] == name)  # noqa: E731
    return Split(pick("train"), pick("validation"), pick("test"))
