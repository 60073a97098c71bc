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
twjax=(.venv/bin/python -m twjax)
data=data/ablation
sessions=data/agent_sessions
families=$(.venv/bin/python -c "
from twjax import agent_train
from experiments import three_way_ablation
print(','.join(agent_train.training_families(agent_train.with_agent_defaults(three_way_ablation.get_config('cpu')))))")
limits=(--temperature 0.6 --max-turns 4 --max-command-tokens 48 --max-output-tokens 96 --cache-len 256
        --backend bwrap --workers 2 --families "$families")  # as the grid's C and RL roll out

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

if [ ! -e "$sessions/passed-x6.jsonl" ]; then
  .venv/bin/python - "$sessions" <<'PY'
import json, pathlib, sys
sessions = pathlib.Path(sys.argv[1])
lines = [line for name in ("train", "more") for path in sorted(sessions.glob(f"{name}-a*.jsonl"))
         for line in path.read_text().splitlines() if json.loads(line)["real_reward"] == 1.0]
(sessions / "passed-x6.jsonl.tmp").write_text("".join(line + "\n" for line in lines) * 5)  # + the originals
(sessions / "passed-x6.jsonl.tmp").rename(sessions / "passed-x6.jsonl")
PY
fi

for run in "recorded-agent:$data/n96/train-*.jsonl,$sessions/train-*.jsonl" "recorded-more:$data/n96/train-*.jsonl" \
           "recorded-agent-balanced:$data/n96/train-*.jsonl,$sessions/train-*.jsonl,$sessions/more-a*.jsonl,$sessions/passed-x6.jsonl"; do
  IFS=: read -r name train <<< "$run"
  "${twjax[@]}" train --config configs/terminal.py:tiny --workdir "runs/fidelity/$name" \
    "--config.data.train=$train" "--config.data.valid=$data/n96/valid-*.jsonl" \
    "--config.data.tokenizer=$data/tokenizer.model" --config.train.steps=400 --config.optim.warmup_steps=20 --config.optim.lr=1e-3 \
    --config.data.seq_len=1024 --config.model.max_len=1024 --config.data.batch_size=4 \
    --config.train.init_from=runs/fidelity/recorded
done

for name in recorded recorded-agent recorded-more recorded-agent-balanced; do
  workdir=runs/fidelity/$name
  if [ ! -e "$workdir/eval-agent-sessions/report.json" ]; then
    "${twjax[@]}" evaluate --workdir "$workdir" --episodes "$sessions/test-*.jsonl" --regimes teacher_forced \
      --train-episodes "$data/n96/train-*.jsonl" --out "$workdir/eval-agent-sessions" --json > "$workdir/eval-agent-sessions.json"
  fi
  if [ ! -e "$workdir/eval-recorded-test/report.json" ]; then
    "${twjax[@]}" evaluate --workdir "$workdir" --episodes "$data/n96/test-*.jsonl" --regimes teacher_forced \
      --train-episodes "$data/n96/train-*.jsonl" --max-episodes 64 --out "$workdir/eval-recorded-test" \
      --json > "$workdir/eval-recorded-test.json"
  fi
  echo "$name: $workdir/eval-agent-sessions/report.json $workdir/eval-recorded-test/report.json"
done
