#!/usr/bin/env bash
# The README's main job: simulate the default advection-diffusion data, train an APHYNITY hybrid
# (transport prior, which lacks the steady source, + ResNet), evaluate it against the prior alone
# and persistence.
#
#   bash scripts/quickstart.sh [OUT] [--overwrite]        (OUT defaults to runs/quickstart)
#
# Everything is built in OUT.partial and renamed to OUT only once the evaluation is written, so a
# failed or interrupted run leaves an earlier OUT as it was; an existing OUT is replaced only
# with --overwrite.
set -euo pipefail
out=runs/quickstart overwrite=0
for arg in "$@"; do
  case $arg in
    --overwrite) overwrite=1 ;;
    -*) echo "quickstart: unknown option $arg (usage: quickstart.sh [OUT] [--overwrite])" >&2; exit 2 ;;
    *) out=${arg%/} ;;
  esac
done
if [[ -e $out && $overwrite == 0 ]]; then
  echo "quickstart: $out exists; pass --overwrite to replace it" >&2
  exit 1
fi
work=$out.partial
rm -rf "$work"  # a previous interrupted attempt, never a finished result
hybrid simulate advection_diffusion --split train --output "$work/data/train.nc"
hybrid simulate advection_diffusion --split test --output "$work/data/test.nc"
hybrid fit --config configs/quickstart.yaml --data.path "$work/data/train.nc" \
  --data.test_path "$work/data/test.nc" --trainer.default_root_dir "$work"
ckpt=$(find "$work" -name last.ckpt | head -n 1)
hybrid evaluate --ckpt_path "$ckpt" --output "$work/evaluation"
if [[ -e $out ]]; then rm -rf "$out"; fi
mv "$work" "$out"
echo "quickstart: results in $out/ (evaluation/summary.md, metrics.json, *.png)"
