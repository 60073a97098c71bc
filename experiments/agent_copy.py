"""Does an agent that can copy pass more tasks? Regime A of the CPU three-way ablation (the 1.3M
agent, 500 updates on data/ablation/n384), three ways, and regime B two ways, 3 seeds each:

  default                               as in the ablation grid
  smeared_keys=True                     smeared keys (model.smeared_keys), from scratch
  smeared_keys=True, init_from=WARMUP   smeared keys, weights from a copy warm-up, where induction
                                        has formed (600 steps of 99% synthetic copy examples)
  regime=B, lambda_obs=0.5              B as in the ablation grid: the terminal's tokens in the loss
  regime=B, ..., init_from=WARMUP       B with smeared keys from the warm-up: does learning the
                                        terminal's outputs keep the copying that A's updates lose?
  regime=C / RL, ..., init_from=WARMUP  C and RL (the ablation grid's knobs and learned terminal,
                                        runs/ablation/terminal) branched off the warm-started A:
                                        do imagined rounds or GRPO add to an agent that can copy?

The ablation's agents write file names memorised from training instead of the task's (README);
names_from_context (agent_eval) measures that: the fraction of the file names in the agent's
commands that its task or an earlier turn held. `bash tools/agent_copy_cpu.sh` makes the data, the
warm-up and the learned terminal, and runs this grid (4-8 min a trial on 2 cores, B's as A's).
"""
import pathlib

from twjax import configlib

ABLATION = pathlib.Path(__file__).resolve().parent / "three_way_ablation.py"
WARMUP = "runs/agentcopy/warmup"  # tools/agent_copy_cpu.sh trains it
TERMINAL = "runs/ablation/terminal"  # tools/ablation_cpu.sh terminal trains it
SEEDS = [0, 1, 2]


def get_config(arg=None):
    config = configlib.load(f"{ABLATION}:cpu")
    # A and B need no learned terminal (judged for real only); C and RL set their own.
    config.agent.update(regime="A", shared_sft="", terminal="")
    config.summary_metrics = (
        "eval/real/in_distribution/all/greedy", "eval/real/in_distribution/all/pass@1",
        "eval/real/in_distribution/all/pass@2", "eval/real/held_out_families/all/greedy",
        "eval/names_from_context_greedy/real/in_distribution", "eval/names_from_context/real/in_distribution",
        "eval/names_from_context_greedy/real/held_out_families")
    return config


def get_sweep(arg=None):
    """A seed sets the data order as well as the initial weights: train.seed alone would leave the
    warm-started arm, whose weights come from WARMUP, the same run three times."""
    points = []
    for seed in SEEDS:
        seeds = {"train.seed": seed, "data.seed": seed}
        points.append(dict(seeds))
        points.append({"model.smeared_keys": True, **seeds})
        points.append({"model.smeared_keys": True, "train.init_from": WARMUP, **seeds})
    for seed in SEEDS:
        full = {"agent.regime": "B", "data.lambda_obs": 0.5, "train.seed": seed, "data.seed": seed}
        points.append(full)
        points.append({**full, "model.smeared_keys": True, "train.init_from": WARMUP})
    # C and RL of a seed share the warm-started A run they branch off (agent.shared_sft).
    warm_learned = {"model.smeared_keys": True, "train.init_from": WARMUP, "agent.terminal": TERMINAL,
                    "agent.shared_sft": "../shared-sft"}
    for seed in SEEDS:
        seeds = {"train.seed": seed, "data.seed": seed}
        points.append({"agent.regime": "C", **warm_learned, **seeds})
        points.append({"agent.regime": "RL", "agent.lambda_env": 0.1, **warm_learned, **seeds})
    return points
