"""C and RL off the best A yet, in learned terminals that read the same sessions, 3 seeds each:

  regime=A       experiments/agent_context.py's copy-head A: 1,024-token windows, 8 a batch, 500
                 updates on data/ablation/n384, sessions opening with the task alone (0.569 of the
                 real in-distribution tasks greedy, README); one run a seed, shared (agent.shared_sft)
  regime=C / RL  branched off it, inside runs/fidelity/pointer-n384: the copy-head terminal with a
                 1,024-token context trained on the same collection (tools/fidelity_cpu.sh pointer-n384),
                 and inside pointer-n384-agent: that terminal fine-tuned on seed 0's A sessions,
                 replayed for real and judged by the real verifier (tools/context_sessions_cpu.sh 0)

agent_observed's C and RL stayed at or under their A (0.127), whose sessions opened with an
observation of the task's files; here neither model sees one, and the A passes four times as often,
so C's rounds and RL's groups hold more real successes to learn from. On 2026-12-06 (README) C and
RL stayed within A's spread in both terminals, which pass 1-3 of 34 of the agents' sessions where
17-24 pass for real.
`bash tools/fidelity_cpu.sh pointer-n384` makes the data and the terminal (on 2 cores ~10 min of
collection, 18 of training, 5 of evaluation); `twjax sweep experiments/agent_context_imagined.py --launcher local --exproot runs/sweeps
--only` its A and pointer-n384 trials of seed 0 (the first three), then `bash tools/context_sessions_cpu.sh 0`,
then the whole sweep.
"""
import pathlib

from twjax import configlib

AGENT_CONTEXT = pathlib.Path(__file__).resolve().parent / "agent_context.py"
AGENT_OBSERVED = pathlib.Path(__file__).resolve().parent / "agent_observed.py"
TERMINALS = ("runs/fidelity/pointer-n384", "runs/fidelity/pointer-n384-agent")


def get_config(arg=None):
    return configlib.load(str(AGENT_CONTEXT))


def get_sweep(arg=None):
    """agent_observed's grid (seed by seed: A, then C and RL off it), C and RL in each terminal."""
    points = []
    for point in configlib.load_module(str(AGENT_OBSERVED)).get_sweep():
        points += [{**point, "agent.terminal": t} for t in TERMINALS] if "agent.terminal" in point else [point]
    return points
