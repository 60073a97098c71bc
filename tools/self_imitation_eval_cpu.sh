#!/usr/bin/env bash
# A wider, paired judge of experiments/agent_self_imitation.py than its sweep's (34 tasks, 2 sampled
# attempts): each seed's A (agent_terminal_observes' trial) and the named arms of agent_self_imitation
# (or agent_terminal_observes' equal-weight C, arm "equal"), on 68 fresh in-distribution tasks (4 per
# family, eval seed 1: none of the sweep's) with 4 sampled attempts and one greedy each, in real
# sandboxes. Then, per arm, pass@1 and greedy against A's on the same tasks: the mean over the 3 x 68
# (seed, task) pairs of the difference, with a 95% bootstrap interval over those pairs.
# ~3 min an agent on 2 cores.
# Usage: bash tools/self_imitation_eval_cpu.sh [ARM...]   (default: imagined_fraction=0.25 equal)
set -euo pipefail
cd "$(dirname "$0")/.."
twjax=(.venv/bin/python -m twjax)
out=runs/sweeps/agent_self_imitation/wide-eval
observes=runs/sweeps/agent_terminal_observes
arms=("$@")
[ ${#arms[@]} -gt 0 ] || arms=(imagined_fraction=0.25 equal)

agent_dir() {  # arm seed -> the trial's final agent (its agent.json says which run)
  local seeds="train.seed=$2,data.seed=$2" trial
  case $1 in
    A) trial="$observes/$seeds" ;;
    equal) trial="$observes/regime=C,terminal=fidelity_observed-pointer-n384-agent,$seeds" ;;
    *) trial="runs/sweeps/agent_self_imitation/$1,$seeds" ;;
  esac
  .venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["final"])' "$trial/agent.json"
}

for arm in A "${arms[@]}"; do
  for seed in 0 1 2; do
    dir=$out/$arm/seed-$seed
    if [ ! -e "$dir/report.json" ]; then
      mkdir -p "$dir"
      "${twjax[@]}" agent eval --agent "$(agent_dir "$arm" "$seed")" --tasks 68 --samples 4 --ks 1,4 --seed 1 \
        --held-out-families "" --episodes-dir "$dir" --out "$dir/report.json.tmp" > /dev/null
      mv "$dir/report.json.tmp" "$dir/report.json"
    fi
  done
done

.venv/bin/python - "$out" "${arms[@]}" <<'EOF'
import json, pathlib, sys
import numpy as np

out, arms = pathlib.Path(sys.argv[1]), sys.argv[2:]


def per_task(arm, name):
    """(seed, task_id) -> the fraction of that attempt file's attempts that passed."""
    rates = {}
    for seed in (0, 1, 2):
        attempts = {}
        for line in (out / arm / f"seed-{seed}" / f"real-in_distribution-{name}.jsonl").read_text().splitlines():
            episode = json.loads(line)
            attempts.setdefault((seed, episode["task_id"]), []).append(bool(episode["passed"]))
        rates.update({key: float(np.mean(passed)) for key, passed in attempts.items()})
    return rates


rng = np.random.default_rng(0)
print("| arm | pass@1 | greedy | pass@1 minus A's [95% CI] | greedy minus A's [95% CI] |")
print("| --- | --- | --- | --- | --- |")
base = {name: per_task("A", name) for name in ("sampled", "greedy")}
for arm in ["A", *arms]:
    rates = base if arm == "A" else {name: per_task(arm, name) for name in ("sampled", "greedy")}
    cells = [f"{np.mean(list(rates[name].values())):.3f}" for name in ("sampled", "greedy")]
    for name in ("sampled", "greedy"):
        keys = sorted(base[name])
        if sorted(rates[name]) != keys:
            raise SystemExit(f"{arm} and A were judged on different tasks")
        diffs = np.array([rates[name][k] - base[name][k] for k in keys])
        means = diffs[rng.integers(0, len(diffs), (10_000, len(diffs)))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        cells.append("—" if arm == "A" else f"{diffs.mean():+.3f} [{low:+.3f}, {high:+.3f}]")
    print(f"| {arm} | " + " | ".join(cells) + " |")
print(f"({len(keys)} (seed, task) pairs; pass@1 is the mean of 4 sampled attempts a task)")
EOF
