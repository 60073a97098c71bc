"""C and RL in a learned terminal that copies and judges recorded probes well: agents whose sessions
open with an observation of their task's files, 3 seeds each:

  regime=A                     the copy-head agent of experiments/agent_pointer.py, trained on the
                               observed transcripts (data/observed/n384) with a 1,024-token context
  regime=C / RL                branched off that A (shared by the trials of a seed), inside
                               runs/fidelity/observed-pointer

The grid's learned terminal (runs/ablation/terminal, 256 tokens) is too generous and too unsure to
guide C and RL: it passes many more agent sessions than hold for real (README). observed-pointer is
a copy-head terminal trained on observed transcripts (tools/fidelity_cpu.sh observed-pointer): 0.246
of its non-empty outputs are right and its verdicts separate passes from failures at AUC 0.836. A
terminal trained on observed sessions needs the observation in front of it, and so does the agent,
so here both see it (agent.observe_setup), with a context long enough to hold it (1,024 tokens, as
the terminal's). The batch holds 8 sequences of 1,024 tokens: the observation is terminal text, so
an observed window holds fewer of the agent's tokens than the grid's 256-token ones, and with 4
(the grid's tokens per update) A's agent passed 0 of 34 and repeated `ls -la` (seed 0, valid loss
0.780 after 500 updates, the copy-head A of agent_pointer 0.52-0.55).
`bash tools/agent_observed_cpu.sh` collects the data, trains the terminal and runs this grid. On
2026-12-06 (README) the terminal passed 18-22 of each round's 64 imagined sessions and 1 of the 32
re-checked held: C (0.059) and RL (0.118) stayed at or under A (0.127).
"""
import pathlib

from twjax import configlib

AGENT_COPY = pathlib.Path(__file__).resolve().parent / "agent_copy.py"
DATA = "data/observed/n384"
TERMINAL = "runs/fidelity/observed-pointer"
SEEDS = [0, 1, 2]


def get_config(arg=None):
    config = configlib.load(str(AGENT_COPY))  # A as in the ablation grid, judged for real, names measured
    config.data.update(train=f"{DATA}/train-*.jsonl", valid=f"{DATA}/valid-*.jsonl", seq_len=1024, batch_size=8)
    config.model.update(max_len=1024, copy_head=True)
    config.agent.observe_setup = True
    return config


def get_sweep(arg=None):
    """Seed by seed, so that a grid stopped early holds every arm equally often. A's trial shares
    its run with the C and RL of its seed (agent.shared_sft), so a seed trains A once."""
    points = []
    shared = {"agent.shared_sft": "../shared-sft"}
    for seed in SEEDS:
        seeds = {"train.seed": seed, "data.seed": seed}
        points.append({**shared, **seeds})
        points.append({"agent.regime": "C", "agent.terminal": TERMINAL, **shared, **seeds})
        points.append({"agent.regime": "RL", "agent.lambda_env": 0.1, "agent.terminal": TERMINAL, **shared, **seeds})
    return points
