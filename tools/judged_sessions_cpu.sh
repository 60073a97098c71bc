#!/usr/bin/env bash
# Verdicts on imagined sessions (issue 7). The balanced terminal (runs/fidelity/recorded-agent-balanced,
# bash tools/agent_sessions_cpu.sh) judges agents' sessions replayed for real well (balanced accuracy
# 0.82), but C and RL ask it to judge sessions it imagined itself, and of the imagined sessions it
# passed, 1 of 16 held for real. Here each of the grid's three shared A runs rolls out inside that
# terminal on fresh training-family tasks (temperature 0.6, as C and RL sample); each session, as
# the agent saw it, is closed by the real verifier's verdict on its replay (twjax rollout
# --judged-out: the imagined turns are context, only the verdict is a target), and the terminal is
# fine-tuned 400 steps from the balanced one on its previous data plus those (the real passes six
# times over):
#   recorded-agent-judged             + 3,072 judged imagined sessions
#   recorded-agent-balanced-more      the previous data alone (the control for the extra steps)
# Scored teacher-forced on 768 judged imagined sessions of other tasks (only the verdict is scored),
# on the replayed agent sessions and on the recorded test transcripts. On 2 cores: ~25 min of
# rollouts, 2 x ~7 min of training, ~20 min of evaluation; re-running skips what is done.
#   bash tools/judged_sessions_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/agent_sessions_lib.sh
agent_sessions=data/agent_sessions
sessions=data/judged_sessions
balanced=runs/fidelity/recorded-agent-balanced

mkdir -p "$sessions"
for agent in runs/sweeps/three_way_ablation-cpu/shared-sft/a-*; do
  seed=$(.venv/bin/python -c "import json; print(json.load(open('$agent/config.json'))['train']['seed'])")
  # Task seeds apart from the agents' training and eval tasks and from agent_sessions_cpu.sh's train
  # and more sets (seed + 1, seed + 5); the first test tasks are agent_sessions_cpu.sh's (seed 4),
  # then 192 more per agent (seed 8): 4-6% pass, so 64 sessions hold only a few passes.
  for split in train:$((seed + 9)):1024 test:4:64 test-more:8:192; do
    IFS=: read -r name task_seed count <<< "$split"
    out=$sessions/judged-$name-a$seed.jsonl
    if [ ! -e "$out" ]; then
      "${twjax[@]}" rollout --agent "$agent" --terminal "$balanced" --count "$count" --seed "$task_seed" \
        "${limits[@]}" --out "$sessions/imagined-$name-a$seed.jsonl" --replay-out "$sessions/replay-$name-a$seed.jsonl" \
        --judged-out "$out.tmp"
      mv "$out.tmp" "$out"
    fi
  done
done
passes_x6 "$sessions/judged-passed-x6.jsonl" "$sessions/judged-train-a*.jsonl"

previous="$data/n96/train-*.jsonl,$agent_sessions/train-*.jsonl,$agent_sessions/more-a*.jsonl,$agent_sessions/passed-x6.jsonl"
finetune recorded-agent-judged "$previous,$sessions/judged-train-*.jsonl,$sessions/judged-passed-x6.jsonl" "$balanced"
finetune recorded-agent-balanced-more "$previous" "$balanced"

for name in recorded-agent-balanced recorded-agent-balanced-more recorded-agent-judged; do
  evaluate "runs/fidelity/$name" eval-judged-sessions "$sessions/judged-test-*.jsonl"
done
for name in recorded-agent-balanced-more recorded-agent-judged; do
  evaluate "runs/fidelity/$name" eval-agent-sessions "$agent_sessions/test-*.jsonl"
  evaluate "runs/fidelity/$name" eval-recorded-test "$data/n96/test-*.jsonl" --max-episodes 64
done
