"""The three-way ablation (+ RL): how should an agent be trained when a learned terminal exists?

  A   assistant-masked SFT: loss on the agent's tokens only            (agent.regime "A")
  B   full-transcript SFT ("ECHO in SFT"): the terminal's tokens too,  (agent.regime "B",
      weighted by lambda_obs                                            data.lambda_obs)
  C   SFT against the learned terminal: trajectories imagined in it,   (agent.regime "C",
      kept when the task's verifier passes, then masked SFT             agent.terminal)
  RL  GRPO in the learned terminal + lambda * L_env (next-token CE on  (agent.regime "RL",
      the terminal's tokens)                                            agent.lambda_env)
x 3 seeds x training-set sizes, beside the floor (UNTRAINED: the same architecture, no updates, per
seed) and the ceiling (EXPERT: the tasks' expert solutions). Every trial is `twjax agent train`
(the same number of optimizer updates in every regime); the outcome is its pass rate on held-out
tasks in real sandboxes (W/metrics.json, the hparams table, and the sweep's results.md / .json /
.png: mean and 95% CI over seeds).
cpu: `bash tools/ablation_cpu.sh` makes the data, the tokenizer and the learned terminal
(runs/ablation/terminal), then runs this grid (36-37 minutes on 2 cores on 2026-12-01 and 12-04; about 66 on
the slower VM of that morning).
tpu: set agent.terminal to the workdir of a trained learned terminal (e.g. the best point of
terminal_scaling) sharing data/ablation/tokenizer.model; data:
`twjax collect --config configs/data/small.py --config.episodes.train=N --out data/ablation/nN`.
"""
import pathlib

from twjax import configlib

BASE = pathlib.Path(__file__).resolve().parents[1] / "configs" / "agent.py"
DATA = "data/ablation"
SEEDS = [0, 1, 2]
EPISODES_PER_FAMILY = {"cpu": [384], "tpu": [250, 1000, 4000]}
LAMBDA_OBS = {"cpu": [0.5], "tpu": [0.1, 0.3, 1.0]}
LAMBDA_ENV = {"cpu": [0.1], "tpu": [0.0, 0.1, 1.0]}


def train_glob(n: int) -> str:
    return f"{DATA}/n{n}/train-*.jsonl"


def variant(arg):
    name = arg or "tpu"
    if name not in EPISODES_PER_FAMILY:
        raise ValueError(f"unknown variant {name!r}: cpu or tpu")
    return name


def get_config(arg=None):
    """configs/agent.py (the trainer's config + the `agent` block of twjax agent train), on this data."""
    name = variant(arg)
    config = configlib.load(f"{BASE}:{'tiny' if name == 'cpu' else 'base100m'}")
    config.program = "agent train"
    config.summary_metrics = ("eval/real/in_distribution/all/greedy", "eval/real/in_distribution/all/pass@1",
                              "eval/real/in_distribution/all/pass@2", "eval/real/held_out_families/all/greedy",
                              "eval/learned/in_distribution/all/greedy", "eval/sim_to_real_gap_greedy/in_distribution")
    config.model.vocab_size = 0
    largest = EPISODES_PER_FAMILY[name][-1]
    config.data.train = train_glob(largest)
    config.data.valid = f"{DATA}/n{largest}/valid-*.jsonl"
    config.data.tokenizer = f"{DATA}/tokenizer.model"  # the learned terminal's: C and RL need the same one
    if name == "cpu":
        # Two CPU cores, 36-66 minutes for the grid: a 1.3M-parameter agent (d_model 128) makes
        # 500 updates in 3-7 minutes; the 4.1M tiny shape took 2.5x as long per update.
        config.model.update(d_model=128, n_heads=4, n_kv_heads=1, d_ff=384)
        config.train.update(steps=500, eval_every=250, ckpt_every=250)
        # One run of A per seed, shared: C and RL link its checkpoints at their base steps.
        # Temperature 0.6: A (seed 0) passes real tasks 0.147 / 0.088 / 0.044 of the time sampled
        # at 0.3 / 0.6 / 1.0 (README), so C's rounds and RL's groups hold some real successes while
        # the samples of a group still differ.
        config.agent.update(terminal="runs/ablation/terminal", shared_sft="../shared-sft", temperature=0.6,
                            rounds=2, round_steps=50, tasks_per_round=64, rl_steps=12, tasks_per_step=4,
                            group_size=8, real_fraction=0.25, max_command_tokens=48, eval_tasks=34, eval_samples=2,
                            backend="bwrap", workers=2)
    if name == "tpu":
        config.train.steps = 10_000
        config.train.distributed = True
        config.agent.update(rounds=4, round_steps=500, tasks_per_round=512, rl_steps=1000, tasks_per_step=32,
                            eval_tasks=100, eval_samples=4, eval_ks=(1, 4), workers=16)
    return config


def get_sweep(arg=None):
    """agent train maps A to data.regime "agent" and B to "full" itself; lambda_obs only matters in B.
    A seed sets the data order as well as the initial weights, so the intervals over seeds hold both
    sources of a run's variance."""
    name = variant(arg)
    largest = EPISODES_PER_FAMILY[name][-1]
    points = []
    for seed in SEEDS:
        points.append({"agent.regime": "UNTRAINED", "data.train": train_glob(largest), "train.seed": seed})
        for n in EPISODES_PER_FAMILY[name]:
            common = {"data.train": train_glob(n), "train.seed": seed, "data.seed": seed}
            points.append({"agent.regime": "A", **common})
            for lambda_obs in LAMBDA_OBS[name]:
                points.append({"agent.regime": "B", "data.lambda_obs": lambda_obs, **common})
            points.append({"agent.regime": "C", **common})
            for lambda_env in LAMBDA_ENV[name]:
                points.append({"agent.regime": "RL", "agent.lambda_env": lambda_env, **common})
    # The expert's pass rate depends on neither seed nor data: one trial.
    points.append({"agent.regime": "EXPERT", "data.train": train_glob(largest)})
    return points
