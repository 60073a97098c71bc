#!/usr/bin/env bash
# The CPU three-way ablation end to end (about an hour on 2 cores): real transcripts, the tokenizer,
# the learned terminal the C and RL agents train in, then the grid and its results table.
#   bash tools/ablation_cpu.sh          re-running skips what is done and resumes the rest
# Paths are the ones experiments/three_way_ablation.py:cpu reads (relative to the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
twjax=(.venv/bin/python -m twjax)
data=data/ablation
train_glob="$data/n96/train-*.jsonl"

if [ ! -e "$data/n96/stats.json" ]; then
  "${twjax[@]}" collect --config configs/data/tiny.py --config.episodes.train=96 --out "$data/n96"
fi
if [ ! -e "$data/tokenizer.model" ]; then
  "${twjax[@]}" tokenizer train --episodes "$train_glob" --out "$data/tokenizer.model" --vocab-size 2048
fi
# The learned terminal: the tiny preset, 600 steps on these transcripts (a run stopped midway resumes).
"${twjax[@]}" train --config configs/terminal.py:tiny --workdir runs/ablation/terminal \
  "--config.data.train=$train_glob" "--config.data.valid=$data/n96/valid-*.jsonl" \
  "--config.data.tokenizer=$data/tokenizer.model" --config.train.steps=600
"${twjax[@]}" sweep experiments/three_way_ablation.py:cpu --launcher local --exproot runs/sweeps
