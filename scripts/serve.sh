#!/usr/bin/env bash
# Sets up midiseed (the daemon only: no TensorFlow) and runs it with the shipped default model.
# Any option is passed to `midiseed serve` (see `bash scripts/serve.sh --help` and config.toml).
# On Linux without ALSA's sequencer (/dev/snd/seq), it starts a private JACK dummy server if
# jackd is installed (Debian/Ubuntu: apt-get install jackd2) and none is running: the rig the
# tests and the bench use (python -m midiseed.bench.rig jackd), stopped again on the way out.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .

for arg in "$@"; do
  case "$arg" in
    -h | --help) exec .venv/bin/midiseed serve --help ;;  # help only: no server, no daemon
  esac
done

if [ "$(uname)" = Linux ] && [ ! -e /dev/snd/seq ] && command -v jackd >/dev/null 2>&1; then
  jack_pid=$(.venv/bin/python -m midiseed.bench.rig jackd --log /tmp/midiseed-jackd.log)
  if [ -n "$jack_pid" ]; then
    echo "no ALSA sequencer here: started a JACK dummy server (pid $jack_pid) for midiseed's ports" >&2
    trap 'kill "$jack_pid" 2>/dev/null || true' EXIT
  fi
fi
.venv/bin/midiseed serve "$@"
