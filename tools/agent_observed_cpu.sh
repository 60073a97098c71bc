#!/usr/bin/env bash
# experiments/agent_observed.py end to end: the copy-head terminal trained on observed transcripts
# (bash tools/fidelity_cpu.sh observed-pointer: the ablation's 96-per-family collection observed, ~45
# min on 2 cores with its evaluation), the agents' observed transcripts (the ablation's 384-per-family
# collection, seed 7, observed: ~12 min), then the grid (9 trials, 23-28 min a seed on 2 cores):
# runs/sweeps/agent_observed/results.md.
# Re-running skips what is done.
#   bash tools/agent_observed_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
twjax=(.venv/bin/python -m twjax)
bash tools/fidelity_cpu.sh observed-pointer
if [ ! -e data/observed/n384/stats.json ]; then
  "${twjax[@]}" collect --config configs/data/tiny.py --config.episodes.train=384 --config.seed=7 \
    --config.observe_setup=True --out data/observed/n384
fi
"${twjax[@]}" sweep experiments/agent_observed.py --launcher local --exproot runs/sweeps
