#!/usr/bin/env bash
# Teaching the learned terminal to judge agents (issue 7): the 1,024-token terminal
# (runs/fidelity/recorded, bash tools/verifier_terminal_cpu.sh) learned its verdicts only on expert
# sessions and injected mistakes, and passes ~1% of the grid's A agents' sessions. Here each of the
# grid's three shared A runs rolls out on fresh training-family tasks inside that terminal (twjax
# rollout, temperature 0.6 as C and RL sample), every session is replayed in a real sandbox and
# closed by the real verifier (--replay-out), and the terminal is fine-tuned 400 steps (peak
# learning rate 1e-3; its run ended at 3e-4) from runs/fidelity/recorded on:
#   recorded-more            its own transcripts alone (the control for the extra steps)
#   recorded-agent           its own transcripts + 512 replayed sessions per agent
#   recorded-agent-balanced  its own transcripts + 1,024 per agent, the passing ones 6 times over
#                            (5-6% of the sessions pass for real)
# Each terminal is scored teacher-forced on replays of other tasks (data/agent_sessions/test-*.jsonl:
# verifier verdicts, outputs) and on the recorded test transcripts. ~8 min of rollouts, 3 x ~9 min
# of training and 3 x ~7 min of evaluation on 2 cores; re-running skips what is done.
#   bash tools/agent_sessions_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/agent_sessions_lib.sh
sessions=data/agent_sessions

mkdir -p "$sessions"
for agent in runs/sweeps/three_way_ablation-cpu/shared-sft/a-*; do
  seed=$(.venv/bin/python -c "import json; print(json.load(open('$agent/config.json'))['train']['seed'])")
  # Task seeds: --seed S draws S * 1,000,003 + i, apart from the agents' training and eval tasks.
  for split in train:$((seed + 1)):512 test:4:64 more:$((seed + 5)):512; do
    IFS=: read -r name task_seed count <<< "$split"
    out=$sessions/$name-a$seed.jsonl
    if [ ! -e "$out" ]; then
      "${twjax[@]}" rollout --agent "$agent" --terminal runs/fidelity/recorded --count "$count" --seed "$task_seed" \
        "${limits[@]}" --out "$sessions/imagined-$name-a$seed.jsonl" --replay-out "$out.tmp"
      mv "$out.tmp" "$out"
    fi
  done
done
passes_x6 "$sessions/passed-x6.jsonl" "$sessions/train-a*.jsonl" "$sessions/more-a*.jsonl"

finetune recorded-agent "$data/n96/train-*.jsonl,$sessions/train-*.jsonl" runs/fidelity/recorded
finetune recorded-more "$data/n96/train-*.jsonl" runs/fidelity/recorded
finetune recorded-agent-balanced \
  "$data/n96/train-*.jsonl,$sessions/train-*.jsonl,$sessions/more-a*.jsonl,$sessions/passed-x6.jsonl" runs/fidelity/recorded

for name in recorded recorded-agent recorded-more recorded-agent-balanced; do
  evaluate "runs/fidelity/$name" eval-agent-sessions "$sessions/test-*.jsonl"
  evaluate "runs/fidelity/$name" eval-recorded-test "$data/n96/test-*.jsonl" --max-episodes 64
done
