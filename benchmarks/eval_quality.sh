#!/usr/bin/env bash
# The README's quality table: pulse (bundled generator, its recommended settings: from the bundled encoder's starts
# when it is installed, else 100 steps from random starts; `--init random` for those) and srresnet (bundled network)
# vs bicubic on both held-out subsets, x8, 1 sample, seed 0. Prints one markdown table per subset; reports go to
# OUT_DIR/<subset>/.
#
#   benchmarks/eval_quality.sh [OUT_DIR] [more `pulse eval` options, which override these]
#   benchmarks/eval_quality.sh /tmp/quick --limit 8 --methods bicubic --resolution 128   # smoke test
#
# Needs `pip install "pulse[eval]"` for LPIPS and identity. Outputs are derived from real faces:
# keep them out of the repository (only small grids may go into README/docs).
set -euo pipefail

out=${1:-eval_quality}
shift $(( $# > 0 ? 1 : 0 ))
data=${PULSE_EVAL_DATA:-$(dirname "$0")/../../shared/data/eval}

for subset in celebahq256 aaf256; do
    echo "## $subset"
    pulse eval --data "$data/$subset" --out "$out/$subset" --scale 8 --samples 1 --seed 0 \
        --methods bicubic,srresnet,pulse --grid-faces 8 "$@"
    echo
done
