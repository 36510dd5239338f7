#!/usr/bin/env bash
# How midiseed/models/default.onnx was made: the multi-style model of issue 11, trained through the
# token store on every collection music21 ships (14,855 pieces, 5.35 M tokens). Figures and the
# decisions behind each step: midiseed/models/MODEL_CARD.md.
#
# Stage 1 ran on a lent GPU machine (one H200, JAX), stage 2 on the 2-core build CPU. With no GPU,
# stage 1 runs here too (the same train command under TensorFlow, ~5k tokens/s for `wide`: days;
# --time-limit and re-running resume it).
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/midiseed
$M data music21 --out data/music21 --all                  # resumable; ~75 min on a busy 2-core machine
$M data tokenize data/music21 --out data/music21-store    # incremental; ~1 min

# Stage 1, on the GPU machine, with data/music21-store and the keras/namex/optree wheels carried
# (see train_music21_gpu.sh): default, wide and large side by side, 4 minutes, then default and
# wide resumed for 4 more (both stopped early). The run directories come back as runs/gpu/g-*.
#   OUT=$OUT PRESETS="default wide large" TUNE=" " MINUTES=4 bash scripts/train_music21_gpu.sh
#   OUT=$OUT PRESETS="default wide" TUNE=" " MINUTES=4 bash scripts/train_music21_gpu.sh
# The melody specialist it was measured against (not shipped):
#   $M data tokenize data/folk --out data/folk-store   # data/folk = the five folk collections
#   OUT=$OUT STORE=data/folk-store NAME=folk PRESETS=default TUNE=" " MINUTES=2 bash scripts/train_music21_gpu.sh
for run in g-default g-wide g-large; do
  $M export runs/gpu/$run --out runs/gpu/$run.onnx
done

# Stage 2, here: the chosen size fine-tuned against its own greedy loops (loops up to 32 events).
$M train --data data/music21-store --out runs/gpu/c-wide-al --preset wide --init runs/gpu/g-wide \
  --anti-loop 0.5 --loop-period 32 --learning-rate 3e-4 --keep last --epochs 400 --patience 400 \
  --stride 64 --steps-per-epoch 40 --time-limit 55
$M export runs/gpu/c-wide-al --out runs/gpu/c-wide-al.onnx

# Decisions on the validation split ...
for model in g-default g-wide c-wide-al; do
  $M evaluate --model runs/gpu/$model.onnx --data data/music21 --split validation --seeds 10 --follow-seeds 30
done
# step time of each size, three rounds side by side (the median of each goes in the card)
.venv/bin/python -c '
from pathlib import Path
from midiseed.bench.inference import bench_step
for r in range(3):
    for m in ["g-default", "g-wide", "g-large"]:
        d = bench_step(Path(f"runs/gpu/{m}.onnx"), steps=5000)
        print(r, m, d["p50_ms"], d["p99_ms"])'
cp runs/gpu/c-wide-al.onnx midiseed/models/default.onnx
# ... and the card reports the test split, and the five-seed check
$M evaluate --model midiseed/models/default.onnx --data data/music21 --follow-seeds 50
python -m midiseed.bench.newuser --model default
