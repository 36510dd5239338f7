#!/usr/bin/env bash
# How midiseed/models/chorale.onnx was made (shipped as default.onnx until the multi-style model of
# issue 11 replaced it; see midiseed/models/MODEL_CARD.md for its figures).
# Takes hours on a 2-core CPU; on a GPU box, train with KERAS_BACKEND=jax and export here.
#
# Epochs: the shipped model was trained when an epoch held every transposition (-5..6) of every
# training window: 213 batches of 128 at stride 64. Training now transposes each window on the fly,
# one random shift a visit, so --steps-per-epoch 213 keeps an epoch that long.
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/midiseed
$M data music21 --composer bach --out data/bach
$M data tokenize data/bach --out data/bach-store
$M train --data data/bach-store --out runs/default --preset default --epochs "${EPOCHS:-40}" --patience 5 \
  --stride 64 --steps-per-epoch 213
# then fine-tune it against its own greedy loops (DITTO windows; half of them from loops it falls
# into): first loops of up to 8 events, then phrase-length ones (up to 32, three times running)
$M train --data data/bach-store --out runs/default-ft --preset default --init runs/default --anti-loop 0.5 \
  --learning-rate 3e-4 --epochs 3 --patience 3 --stride 64 --steps-per-epoch 213 --keep last
$M train --data data/bach-store --out runs/default-ft2 --preset default --init runs/default-ft --anti-loop 0.5 \
  --loop-period 32 --learning-rate 3e-4 --epochs 2 --patience 3 --stride 64 --steps-per-epoch 213 --keep last
$M export runs/default-ft2 --out midiseed/models/chorale.onnx
$M export runs/default-ft2 --out midiseed/models/chorale-int8.onnx --int8 || echo "int8 refused (under 99% top-1 agreement): fp32 only"
# the architecture we started from, on the same files (no transposition: it is ~8x slower per token)
$M train --data data/bach-store --out runs/seed --preset seed --epochs "${SEED_EPOCHS:-8}" --patience 3 \
  --transpose 0 --stride 64 --batch-size 32
$M export runs/seed --out runs/seed.onnx
for model in midiseed/models/chorale.onnx runs/seed.onnx; do
  $M evaluate --model $model --data data/bach
  $M evaluate --model $model --data data/bach --loop-period 32
done
