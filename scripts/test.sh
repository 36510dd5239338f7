#!/usr/bin/env bash
# Sets up a virtual environment with everything (daemon, training, dev tools), lints, runs the tests.
# The tests that need MIDI ports start a private JACK dummy server if none is running (jackd2 must be
# installed: `apt-get install jackd2`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[train,dev]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
