#!/usr/bin/env bash
# Verdicts on imagined sessions (issue 7), in two rounds. The balanced terminal
# (runs/fidelity/recorded-agent-balanced, bash tools/agent_sessions_cpu.sh) judges agents' sessions
# replayed for real well (balanced accuracy 0.82), but C and RL ask it to judge sessions it imagined
# itself, and of the imagined sessions it passed, 1 of 16 held for real. In each round the grid's
# three shared A runs roll out inside a terminal on fresh training-family tasks (temperature 0.6, as
# C and RL sample); each session, as the agent saw it, is closed by the real verifier's verdict on
# its replay (twjax rollout --judged-out: the imagined turns are context, only the verdict is a
# target), and that terminal is fine-tuned 400 steps on its data so far plus those (the real passes
# six times over), beside a control fine-tuned as long on the data so far alone:
#   round 1, inside recorded-agent-balanced:  recorded-agent-judged (+ 3,072 judged imagined
#            sessions), control recorded-agent-balanced-more
#   round 2, inside recorded-agent-judged, on its own false passes: recorded-agent-judged2
#            (+ 3,072 more), control recorded-agent-judged-more
# Each round's terminals are scored teacher-forced on 768 judged imagined sessions of other tasks,
# imagined by the round's terminal (only the verdict is scored), on the replayed agent sessions and
# on the recorded test transcripts. On 2 cores, per round: ~25 min of rollouts, 2 x ~7 min of
# training, ~20 min of evaluation; re-running skips what is done.
#   bash tools/judged_sessions_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/agent_sessions_lib.sh
agent_sessions=data/agent_sessions
previous="$data/n96/train-*.jsonl,$agent_sessions/train-*.jsonl,$agent_sessions/more-a*.jsonl,$agent_sessions/passed-x6.jsonl"

# judged_round SESSIONS TERMINAL TRAIN_SEED_OFFSET: each A run's judged sessions inside TERMINAL, in
# SESSIONS: 1,024 on training tasks of seed (agent seed + TRAIN_SEED_OFFSET), apart from the agents'
# training and eval tasks and from agent_sessions_cpu.sh's train and more sets (seed + 1, seed + 5);
# then the test tasks: agent_sessions_cpu.sh's first (seed 4), then 192 more per agent (seed 8): 4-6%
# pass, so 64 sessions hold only a few passes.
judged_round() {
  local sessions=$1 terminal=$2 offset=$3 agent seed split name task_seed count out
  mkdir -p "$sessions"
  for agent in runs/sweeps/three_way_ablation-cpu/shared-sft/a-*; do
    seed=$(.venv/bin/python -c "import json; print(json.load(open('$agent/config.json'))['train']['seed'])")
    for split in train:$((seed + offset)):1024 test:4:64 test-more:8:192; do
      IFS=: read -r name task_seed count <<< "$split"
      out=$sessions/judged-$name-a$seed.jsonl
      if [ ! -e "$out" ]; then
        "${twjax[@]}" rollout --agent "$agent" --terminal "$terminal" --count "$count" --seed "$task_seed" \
          "${limits[@]}" --out "$sessions/imagined-$name-a$seed.jsonl" --replay-out "$sessions/replay-$name-a$seed.jsonl" \
          --judged-out "$out.tmp"
        mv "$out.tmp" "$out"
      fi
    done
  done
  passes_x6 "$sessions/judged-passed-x6.jsonl" "$sessions/judged-train-a*.jsonl"
}

# score_round SESSIONS EVAL NAME...: each terminal on the round's judged test sessions (report in
# runs/fidelity/NAME/EVAL), and each but the first (the round's starting terminal, scored in the
# round before) on agent sessions and recorded test.
score_round() {
  local sessions=$1 eval_name=$2 name
  shift 2
  for name in "$@"; do
    evaluate "runs/fidelity/$name" "$eval_name" "$sessions/judged-test-*.jsonl"
  done
  for name in "${@:2}"; do
    evaluate "runs/fidelity/$name" eval-agent-sessions "$agent_sessions/test-*.jsonl"
    evaluate "runs/fidelity/$name" eval-recorded-test "$data/n96/test-*.jsonl" --max-episodes 64
  done
}

round1=data/judged_sessions
judged_round "$round1" runs/fidelity/recorded-agent-balanced 9
with_round1="$previous,$round1/judged-train-*.jsonl,$round1/judged-passed-x6.jsonl"
finetune recorded-agent-judged "$with_round1" runs/fidelity/recorded-agent-balanced
finetune recorded-agent-balanced-more "$previous" runs/fidelity/recorded-agent-balanced
score_round "$round1" eval-judged-sessions recorded-agent-balanced recorded-agent-balanced-more recorded-agent-judged

round2=data/judged_sessions/round2
judged_round "$round2" runs/fidelity/recorded-agent-judged 13
finetune recorded-agent-judged2 "$with_round1,$round2/judged-train-*.jsonl,$round2/judged-passed-x6.jsonl" \
  runs/fidelity/recorded-agent-judged
finetune recorded-agent-judged-more "$with_round1" runs/fidelity/recorded-agent-judged
score_round "$round2" eval-round2-sessions recorded-agent-judged recorded-agent-judged-more recorded-agent-judged2
