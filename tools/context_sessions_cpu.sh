#!/usr/bin/env bash
# Teaching the copy-head terminal of experiments/agent_context_imagined.py (runs/fidelity/pointer-n384)
# the agents' sessions: inside it, C's imagined sessions of that experiment's A (0.6 of real tasks)
# mostly fail, as the terminal answers the agent's first command on a file the task names with
# "No such file or directory" (it never saw the state the setup made). The experiment's shared A
# runs of the seeds given roll out 512 sessions each on fresh training-family tasks inside it
# (temperature 0.6, 4 turns, 1,024 tokens, as C and RL sample), each replayed in a real sandbox
# (--replay-out: the real outputs) and closed by the real verifier's verdict (--judged-out: the
# imagined turns as context, only the verdict a target); 64 sessions of other tasks each for the test.
# pointer-n384-agent is the terminal fine-tuned 400 steps on its own transcripts plus both. Both
# terminals are scored teacher-forced on the replayed test sessions (outputs and verdicts) and on
# the judged ones (verdicts on imagined sessions). On 2 cores ~5 min of rollouts per agent, 14 min
# of training beside other runs (~5 alone) and ~4 min of evaluation; re-running skips what is done.
# With --observed the same is done for experiments/agent_terminal_observes.py's terminal,
# observed-pointer-n384 (trained on the observed collection, data/observed): the observation of
# each task's files opens its view of every session but not the agent's (--observe
# --observe-terminal-only), and the sessions are recorded as it saw them; its fine-tune is
# observed-pointer-n384-agent, on data/observed/n384 plus the sessions in data/observed_context_sessions
# (20 min in all beside an agent sweep, 2026-12-06).
#   bash tools/context_sessions_cpu.sh [--observed] SEED...     (the A runs' train.seed, e.g. 0 1 2)
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/agent_sessions_lib.sh
limits+=(--cache-len 1024)  # the last --cache-len counts: these agents and the terminal read 1,024 tokens
terminal=pointer-n384 sessions=data/context_sessions corpus=$data observe=()
if [ "${1:-}" = --observed ]; then
  shift
  terminal=observed-pointer-n384 sessions=data/observed_context_sessions corpus=data/observed
  observe=(--observe --observe-terminal-only)
fi
mkdir -p "$sessions"
for agent in runs/sweeps/agent_context_imagined/shared-sft/a-*; do
  seed=$(.venv/bin/python -c "import json; print(json.load(open('$agent/config.json'))['train']['seed'])")
  [[ " $* " == *" $seed "* ]] || continue
  # Task seeds: --seed S draws S * 1,000,003 + i, apart from the agents' training and eval tasks.
  for split in train:$((seed + 1)):512 test:4:64; do
    IFS=: read -r name task_seed count <<< "$split"
    out=$sessions/judged-$name-a$seed.jsonl
    if [ ! -e "$out" ]; then
      "${twjax[@]}" rollout --agent "$agent" --terminal "runs/fidelity/$terminal" --count "$count" --seed "$task_seed" \
        "${limits[@]}" "${observe[@]}" --out "$sessions/imagined-$name-a$seed.jsonl" --replay-out "$sessions/replay-$name-a$seed.jsonl" \
        --judged-out "$out.tmp"
      mv "$out.tmp" "$out"
    fi
  done
done
pointer=(--config.model.copy_head=True --config.model.smeared_keys=True)
# The last of a repeated --config.data.valid and --train-episodes counts: the terminal's own collection.
finetune "$terminal-agent" "$corpus/n384/train-*.jsonl,$sessions/replay-train-*.jsonl,$sessions/judged-train-*.jsonl" \
  "runs/fidelity/$terminal" "${pointer[@]}" "--config.data.valid=$corpus/n96/valid-*.jsonl"
for name in "$terminal" "$terminal-agent"; do
  evaluate "runs/fidelity/$name" eval-context-replayed "$sessions/replay-test-*.jsonl" --train-episodes "$corpus/n96/train-*.jsonl"
  evaluate "runs/fidelity/$name" eval-context-judged "$sessions/judged-test-*.jsonl" --train-episodes "$corpus/n96/train-*.jsonl"
done
