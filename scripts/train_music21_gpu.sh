#!/usr/bin/env bash
# Issue 11's candidate models, trained side by side on one GPU under JAX (no TensorFlow there), in
# one timed session: the preset sizes from scratch on the whole music21 store, then an anti-loop
# (DITTO) fine-tune of each size that can be served (step p99 <= 0.5 ms on the 2-core CPU). Export,
# evaluation and the choice happen on the CPU machine afterwards (scripts/make_music21_model.sh).
#
# Carried to the GPU machine: the repo, data/music21-store (~14 MB) and .whl/ (keras, namex,
# optree wheels for its Python; `pip download` line in MODEL_CARD.md). Every figure the run writes
# lands in runs/g-* and, packed, in $OUT.
#   PRESETS  sizes trained from scratch          (default: "default wide large")
#   TUNE     sizes fine-tuned against loops       (default: "default wide")
#   MINUTES  training minutes of each size        (default: 4; the runs share the GPU)
#   TUNE_MINUTES minutes of each fine-tune        (default: 1.25)
#   NAME     run names are runs/NAME-PRESET       (default: g)
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${STORE:-data/music21-store}
OUT=${OUT:-runs/gpu-out}
PRESETS=${PRESETS:-default wide large}
TUNE=${TUNE:-default wide}
MINUTES=${MINUTES:-4}
TUNE_MINUTES=${TUNE_MINUTES:-1.25}
NAME=${NAME:-g}
PY=${PY:-python3}
mkdir -p "$OUT" runs
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
if [ -d /tmp/site ]; then export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}; fi
if [ -d .whl ] && ! $PY -c "import keras" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt" || true
# 256 windows of 128 events a batch (twice the CPU runs'): the LSTM's time loop, not the batch, sets
# a step's time on a GPU. 100 batches an epoch = 3.3 M tokens, about 0.8 of a pass over the train split.
common=(--data "$STORE" --epochs 400 --patience 6 --stride 64 --batch-size 256 --steps-per-epoch 100)
for p in $PRESETS; do
  $PY -m midiseed train "${common[@]}" --preset "$p" --out "runs/$NAME-$p" --time-limit "$MINUTES" \
    >"$OUT/$NAME-$p.log" 2>&1 &
done
wait
for p in $TUNE; do
  $PY -m midiseed train "${common[@]}" --preset "$p" --out "runs/$NAME-$p-al" --init "runs/$NAME-$p" \
    --anti-loop 0.5 --learning-rate 3e-4 --keep last --time-limit "$TUNE_MINUTES" \
    >"$OUT/$NAME-$p-al.log" 2>&1 &
done
wait
for r in runs/"$NAME"-*/; do
  r=$(basename "$r")
  tar czf "$OUT/$r.tgz" -C runs --exclude checkpoints "$r"
done
tail -n 3 "$OUT"/"$NAME"-*.log
