#!/usr/bin/env bash
# The README's depixelize table: LR faces made by box averaging (a mosaic's LR), x8, on both held-out subsets,
# searched with the matching box operator and with PULSE's bicubic one; then with JPEG q40 on top of the LR, where
# the L2 consistency loss is also compared with the robust Charbonnier one (CHARB; GEOCROSS at the bundled
# generator's recommended 0.02) and with an eps that allows for the compression (6e-3). Consistency is always judged
# with the operator that made the LR (box). Reports go to OUT_DIR/<subset>_<setting>/ (summary.md, metrics.csv,
# grid.png).
#
#   benchmarks/depixelize_eval.sh [OUT_DIR] [more `pulse eval` options, e.g. --limit 16]
#
# Outputs are derived from real faces: keep them out of the repository.
set -euo pipefail

out=${1:-depixelize_eval}
shift $(( $# > 0 ? 1 : 0 ))
data=${PULSE_EVAL_DATA:-$(dirname "$0")/../../shared/data/eval}
pulse=${PULSE:-pulse}

settings=(
    "box-box|--lr-kernel box --degradation box"
    "box-bicubic|--lr-kernel box --degradation bicubic"
    "box-q40-box|--lr-kernel box --jpeg 40 --degradation box"
    "box-q40-box-charb|--lr-kernel box --jpeg 40 --degradation box --loss CHARB+0.02*GEOCROSS"
    "box-q40-box-eps6|--lr-kernel box --jpeg 40 --degradation box --eps 6e-3"
    "box-q40-bicubic|--lr-kernel box --jpeg 40 --degradation bicubic"
)
for subset in celebahq256 aaf256; do
    for setting in "${settings[@]}"; do
        name=${setting%%|*}
        echo "## $subset, $name"
        # shellcheck disable=SC2086
        $pulse eval --data "$data/$subset" --out "$out/${subset}_$name" --scale 8 --steps 100 --samples 1 --seed 0 \
            --methods bicubic,pulse --grid-faces 4 ${setting#*|} "$@"
        echo
    done
done
