#!/usr/bin/env bash
# The multi-style model of issue 11, trained through the token store on every collection music21
# ships (14,856 pieces, 5.35 M tokens). Started on the 2-core CPU on 2026-11-27 (runs/m21-default,
# ~8k tokens/s, 150-batch epochs of 2.46 M tokens, ~5.5 min each); re-running this script resumes it.
# On a GPU machine: the store (~11 MB) travels; train there with KERAS_BACKEND=jax, export here.
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/midiseed
$M data music21 --out data/music21 --all                  # resumable; ~75 min on a busy 2-core machine
$M data tokenize data/music21 --out data/music21-store    # incremental; ~1 min
$M train --data data/music21-store --out runs/m21-default --preset default --epochs 400 --patience 8 \
  --steps-per-epoch 150 --stride 64
$M export runs/m21-default --out runs/m21-default.onnx
# decisions on the validation split; the card reports the test split
$M evaluate --model runs/m21-default.onnx --data data/music21 --split validation
