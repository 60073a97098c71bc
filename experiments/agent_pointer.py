"""Does a copy head do for the agent what a copy warm-up did? Regime A of the CPU three-way
ablation (the 1.3M agent, 500 updates on data/ablation/n384), three ways, 3 seeds each:

  default                               as in the ablation grid
  copy_head=True                        a pointer over the agent's context beside the vocabulary
                                        (model.copy_head), from scratch
  copy_head=True, smeared_keys=True     the same with smeared keys, from scratch

and the other regimes with the copy head, 3 seeds each, on the grid's knobs:

  regime=B, lambda_obs=0.5              the terminal's tokens in the loss too: does a pointer let
                                        the agent learn the terminal's outputs without losing its own?
  regime=C / RL                         branched off the copy-head A (shared by the trials of a
                                        seed), in the grid's learned terminal (runs/ablation/terminal)
  regime=C, min_pass_probability=0.9    C keeping only the learned passes the terminal gave exit 0
                                        with probability >= 0.9: surer passes on agent sessions?

experiments/agent_copy.py found that the grid's agents write file names memorised from training,
and that a 600-step synthetic copy warm-up doubles A's greedy passes (0.255 against 0.127) while
smeared keys alone do not (0.098). The copy head gives copying by construction, with no warm-up.
`bash tools/ablation_cpu.sh terminal` makes the data and the learned terminal; then
`twjax sweep experiments/agent_pointer.py --launcher local --exproot runs/sweeps`.
"""
import pathlib

from twjax import configlib

AGENT_COPY = pathlib.Path(__file__).resolve().parent / "agent_copy.py"
TERMINAL = "runs/ablation/terminal"
SEEDS = [0, 1, 2]


def get_config(arg=None):
    return configlib.load(str(AGENT_COPY))  # A as in the ablation grid, judged for real, names measured


def get_sweep(arg=None):
    """Seed by seed, so that a grid stopped early holds every arm equally often."""
    points = []
    for seed in SEEDS:
        seeds = {"train.seed": seed, "data.seed": seed}
        points.append(dict(seeds))
        points.append({"model.copy_head": True, **seeds})
        points.append({"model.copy_head": True, "model.smeared_keys": True, **seeds})
    learned = {"agent.terminal": TERMINAL, "agent.shared_sft": "../shared-sft"}
    for seed in SEEDS:
        seeds = {"model.copy_head": True, "train.seed": seed, "data.seed": seed}
        points.append({"agent.regime": "B", "data.lambda_obs": 0.5, **seeds})
        points.append({"agent.regime": "C", **learned, **seeds})
        points.append({"agent.regime": "RL", "agent.lambda_env": 0.1, **learned, **seeds})
        points.append({"agent.regime": "C", "agent.min_pass_probability": 0.9, **learned, **seeds})
    return points
