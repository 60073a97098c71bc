"""C with its kept sessions weighted up: does learning from its own imagined successes move the agent
when they are a real share of each round's data?

In experiments/agent_terminal_observes.py C kept 2-29 sessions a round and trained its 50 updates a
round on them beside A's 6,528 transcripts, as equals: about one window in 250 was its own. Here the
same C (A's runs reused through agent.shared_sft, the fine-tuned observed terminal
runs/fidelity/observed-pointer-n384-agent, 2 rounds of 64 tasks) draws agent.imagined_fraction of each
round's records from the kept sessions (data.upweighted): a quarter and a half, and a half of only
the sessions that pass for real (agent.real_check_fraction=1: every learned pass replayed in a real
sandbox and kept only if the real verifier passes it). A's and the equal-weight C's numbers are
agent_terminal_observes' (the same A runs and eval tasks).
Needs what agent_terminal_observes needs (its terminal and agent_context_imagined's A runs); then
`twjax sweep experiments/agent_self_imitation.py --launcher local --exproot runs/sweeps`.
"""
import pathlib

from twjax import configlib

TERMINAL_OBSERVES = pathlib.Path(__file__).resolve().parent / "agent_terminal_observes.py"
TERMINAL = "runs/fidelity/observed-pointer-n384-agent"
SEEDS = [0, 1, 2]


def get_config(arg=None):
    config = configlib.load(str(TERMINAL_OBSERVES))
    config.agent.update(regime="C", terminal=TERMINAL)
    return config


def get_sweep(arg=None):
    arms = [{"agent.imagined_fraction": 0.25}, {"agent.imagined_fraction": 0.5},
            {"agent.imagined_fraction": 0.5, "agent.real_check_fraction": 1.0}]
    return [{**arm, "train.seed": seed, "data.seed": seed} for seed in SEEDS for arm in arms]
