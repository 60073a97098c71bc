# Sourced by agent_sessions_cpu.sh and judged_sessions_cpu.sh: the grid's three A runs roll out inside
# a learned terminal as the grid's C and RL do, and the 1,024-token terminal is fine-tuned and scored.
twjax=(.venv/bin/python -m twjax)
data=data/ablation
families=$(.venv/bin/python -c "
from twjax import agent_train
from experiments import three_way_ablation
print(','.join(agent_train.training_families(agent_train.with_agent_defaults(three_way_ablation.get_config('cpu')))))")
limits=(--temperature 0.6 --max-turns 4 --max-command-tokens 48 --max-output-tokens 96 --cache-len 256
        --backend bwrap --workers 2 --families "$families")  # as the grid's C and RL roll out

# passes_x6 OUT GLOB...: five copies of each session of the files matching the globs that passes for
# real, so that with the originals each appears six times (5-6% of agent sessions pass).
passes_x6() {
  local out=$1
  shift
  [ -e "$out" ] && return
  .venv/bin/python - "$out" "$@" <<'PY'
import glob, json, pathlib, sys
out, patterns = pathlib.Path(sys.argv[1]), sys.argv[2:]
lines = [line for pattern in patterns for path in sorted(glob.glob(pattern))
         for line in pathlib.Path(path).read_text().splitlines() if json.loads(line)["real_reward"] == 1.0]
pathlib.Path(f"{out}.tmp").write_text("".join(line + "\n" for line in lines) * 5)
pathlib.Path(f"{out}.tmp").rename(out)
PY
}

# finetune NAME TRAIN INIT_FROM [FLAGS...]: 400 steps (peak learning rate 1e-3) of the 1,024-token tiny
# preset into runs/fidelity/NAME (FLAGS: the model's own, e.g. its copy head, which init_from checks).
finetune() {
  "${twjax[@]}" train --config configs/terminal.py:tiny --workdir "runs/fidelity/$1" \
    "--config.data.train=$2" "--config.data.valid=$data/n96/valid-*.jsonl" \
    "--config.data.tokenizer=$data/tokenizer.model" --config.train.steps=400 --config.optim.warmup_steps=20 --config.optim.lr=1e-3 \
    --config.data.seq_len=1024 --config.model.max_len=1024 --config.data.batch_size=4 \
    "--config.train.init_from=$3" "${@:4}"
}

# evaluate WORKDIR NAME EPISODES [FLAGS]: teacher-forced report in WORKDIR/NAME, unless there is one.
evaluate() {
  local workdir=$1 name=$2 episodes=$3
  shift 3
  if [ ! -e "$workdir/$name/report.json" ]; then
    "${twjax[@]}" evaluate --workdir "$workdir" --episodes "$episodes" --regimes teacher_forced \
      --train-episodes "$data/n96/train-*.jsonl" --out "$workdir/$name" "$@" --json > "$workdir/$name.json"
  fi
  echo "$workdir/$name/report.json"
}
