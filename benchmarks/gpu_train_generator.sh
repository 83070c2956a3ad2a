#!/bin/bash
# The generator campaign's GPU leg, sized for one device-tool call (issue #16): train the shipped recipe at
# batch 64 for TRAIN_SECONDS, stop it the way Ctrl-C does (latest.ckpt saved), export the generator and bring
# back what judges it. The generator metrics need dlib and stlpips, which the GPU machine lacks: run
# `python benchmarks/generator_quality.py OUT/generator.pt --n 2000` on the files once they are back.
#
#   device run, carry [".data"]:  TRAIN_SECONDS=420 bash benchmarks/gpu_train_generator.sh .data
#   here (smoke test):            DEVICE=cpu BATCH=4 TRAIN_SECONDS=20 OUT=/tmp/o bash benchmarks/gpu_train_generator.sh FACES
#
# DATA is a folder or zip shard of 128 px aligned faces (one shard of ../shared/data/faces128 fits a call).
# Resumes runs/gpu-generator/latest.ckpt when the machine still holds it (a warm machine keeps ignored files).
set -uo pipefail
DATA=${1:?usage: gpu_train_generator.sh DATA}
OUT=${OUT:?set OUT: the folder whose files come back}
DEVICE=${DEVICE:-cuda} BATCH=${BATCH:-64} TRAIN_SECONDS=${TRAIN_SECONDS:-420}
RUN=runs/gpu-generator
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1

if [ -f $RUN/latest.ckpt ]; then
  python -m pulse train --resume $RUN/latest.ckpt --data "$DATA" > $OUT/train.log 2>&1 &
else
  # The shipped recipe (weights/README.md, "Training"), at the GPU batch.
  python -m pulse train --data "$DATA" --out $RUN --architecture stylegan1 --resolution 128 --batch $BATCH \
    --augment color,translation,cutout --mapping-layers 8 --kimg 100000 --checkpoint-every 20 \
    --snapshot-every 100 --log-every 5 --seed 0 --device $DEVICE > $OUT/train.log 2>&1 &
fi
trainer=$!
sleep $TRAIN_SECONDS
kill -TERM $trainer  # stops after the current step and writes latest.ckpt (a background job ignores SIGINT)
wait $trainer
tail -n 3 $OUT/train.log
python -m pulse train export $RUN/latest.ckpt --output $OUT/generator.pt --half \
  --search-default "loss=100*L2+0.02*GEOCROSS" --search-default trainable_noise_layers=7 || exit 1
[ -f $RUN/log.jsonl ] && cp $RUN/log.jsonl $OUT/log.jsonl
cp "$(ls $RUN/samples-*.png | tail -n 1)" $OUT/samples-last.png
ls -la $OUT
