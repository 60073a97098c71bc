#!/usr/bin/env bash
# The CPU three-way ablation end to end on 2 cores: real transcripts (15-21 min), the tokenizer and
# the learned terminal the C and RL agents train in (7-14 min), then the grid and its results table
# (runs/sweeps/three_way_ablation-cpu/results.md). Re-running skips what is done and resumes the rest.
# With `data`, only the transcripts and the tokenizer; with `terminal`, those and the learned terminal
# (tools/agent_copy_cpu.sh uses them).
#   bash tools/ablation_cpu.sh [data|terminal]
# Paths are the ones experiments/three_way_ablation.py:cpu reads (relative to the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
twjax=(.venv/bin/python -m twjax)
data=data/ablation

# 96 episodes per family for the tokenizer and the learned terminal; 384 (other seeds) for the agents.
collect() {  # episodes-per-family seed
  if [ ! -e "$data/n$1/stats.json" ]; then
    "${twjax[@]}" collect --config configs/data/tiny.py "--config.episodes.train=$1" "--config.seed=$2" --out "$data/n$1"
  fi
}
collect 96 0
collect 384 7
if [ ! -e "$data/tokenizer.model" ]; then
  "${twjax[@]}" tokenizer train --episodes "$data/n96/train-*.jsonl" --out "$data/tokenizer.model" --vocab-size 2048
fi
[ "${1:-}" = data ] && exit 0
# The learned terminal: the tiny preset (4.1M parameters), 600 steps (a run stopped midway resumes).
"${twjax[@]}" train --config configs/terminal.py:tiny --workdir runs/ablation/terminal \
  "--config.data.train=$data/n96/train-*.jsonl" "--config.data.valid=$data/n96/valid-*.jsonl" \
  "--config.data.tokenizer=$data/tokenizer.model" --config.train.steps=600
[ "${1:-}" = terminal ] && exit 0
"${twjax[@]}" sweep experiments/three_way_ablation.py:cpu --launcher local --exproot runs/sweeps
