#!/usr/bin/env bash
# Sets up midiseed (the daemon only: no TensorFlow) and runs it with the shipped default model.
# Any option is passed to `midiseed serve` (see `midiseed serve --help` and config.toml).
# On Linux without ALSA's sequencer (/dev/snd/seq), it starts a private JACK dummy server if
# jackd is installed (Debian/Ubuntu: apt-get install jackd2) and none is running.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .

if [ "$(uname)" = Linux ] && [ ! -e /dev/snd/seq ] && command -v jackd >/dev/null 2>&1; then
  export JACK_NO_AUDIO_RESERVATION=1
  if ! jack_lsp >/dev/null 2>&1; then
    echo "no ALSA sequencer here: starting a JACK dummy server for midiseed's ports" >&2
    for mode in "-R -P 70" "--no-realtime"; do  # real-time where allowed
      # shellcheck disable=SC2086
      jackd $mode -d dummy -r 48000 -p 64 >/tmp/midiseed-jackd.log 2>&1 &
      jack_pid=$!
      for _ in $(seq 50); do jack_lsp >/dev/null 2>&1 && break 2; sleep 0.1; done
      kill "$jack_pid" 2>/dev/null || true
    done
    trap 'kill "$jack_pid" 2>/dev/null || true' EXIT
  fi
fi
.venv/bin/midiseed serve "$@"
