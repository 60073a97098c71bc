#!/usr/bin/env bash
# experiments/verifier_terminal.py end to end: the three-way CPU grid (bash tools/ablation_cpu.sh,
# whose shared A runs C and RL branch off), the 1,024-token learned terminal and its fidelity report
# (bash tools/fidelity_cpu.sh recorded: ~35 min of training and ~5 of evaluation on 2 cores), then
# C and RL with that terminal, 3 seeds each: runs/sweeps/verifier_terminal/results.md.
# Re-running skips what is done.
#   bash tools/verifier_terminal_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/ablation_cpu.sh
bash tools/fidelity_cpu.sh recorded
.venv/bin/python -m twjax sweep experiments/verifier_terminal.py --launcher local --exproot runs/sweeps
