#!/usr/bin/env bash
# experiments/agent_copy.py end to end: the ablation's data and learned terminal (bash
# tools/ablation_cpu.sh terminal, ~25 + 7-14 min on 2 cores), the copy warm-up its warm-started
# arms start from (600 steps of 32 x 128 tokens, 99% synthetic copy examples, with the agent's
# shape and smeared keys, ~12 min), then the grid (21 trials, ~4-8 min each):
# runs/sweeps/agent_copy/results.md. Re-running skips what is done.
#   bash tools/agent_copy_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
twjax=(.venv/bin/python -m twjax)
data=data/ablation
root=runs/agentcopy
bash tools/ablation_cpu.sh terminal

if [ ! -e "$root/warmup/checkpoints/600" ]; then
  "${twjax[@]}" train --config configs/terminal.py:tiny --workdir "$root/warmup" \
    "--config.data.train=$data/n96/train-*.jsonl" "--config.data.valid=$data/n96/valid-*.jsonl" \
    "--config.data.tokenizer=$data/tokenizer.model" --config.data.copy_fraction=0.99 \
    --config.data.batch_size=32 --config.data.seq_len=128 --config.model.max_len=128 \
    --config.model.d_model=128 --config.model.n_heads=4 --config.model.n_kv_heads=1 --config.model.d_ff=384 \
    --config.model.smeared_keys=True --config.train.steps=600 --config.train.eval_every=50 --config.train.progress=False
fi

"${twjax[@]}" sweep experiments/agent_copy.py --launcher local --exproot runs/sweeps
