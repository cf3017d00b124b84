#!/usr/bin/env bash
# The README's main job: simulate the default advection-diffusion data, train an APHYNITY hybrid
# (transport prior, which lacks the tracer's decay, + ResNet), evaluate it against the prior alone
# and persistence. Everything lands in runs/quickstart/ (replaced on each run).
set -euo pipefail
out=${1:-runs/quickstart}
rm -rf "$out"
hybrid simulate advection_diffusion --split train --output "$out/data/train.nc"
hybrid simulate advection_diffusion --split test --output "$out/data/test.nc"
hybrid fit --config configs/quickstart.yaml --data.path "$out/data/train.nc" \
  --data.test_path "$out/data/test.nc" --trainer.default_root_dir "$out"
ckpt=$(find "$out" -name last.ckpt | head -n 1)
hybrid evaluate --ckpt_path "$ckpt" --output "$out/evaluation"
