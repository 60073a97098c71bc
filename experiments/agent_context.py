"""What halves the observed agents' passes: the observation, or the 1,024-token windows and batch of
8 it came with? The A of experiments/agent_observed.py (copy head, 1,024 tokens, batch 8, 500
updates) on the same tasks' transcripts without the observation (data/ablation/n384, the collection
data/observed/n384 observes), 3 seeds; and with 4 windows a batch, the grid's 4,096 tokens an
update, to tell the longer context from the larger batch. Its agents' sessions open with the task
alone, as in experiments/agent_pointer.py, whose copy-head A (16 windows of 256 tokens) passed
0.255 of the real in-distribution tasks against the observed A's 0.127.
`twjax sweep experiments/agent_context.py --launcher local --exproot runs/sweeps` (~11 min a trial
with 8 windows on 2 cores; tools/ablation_cpu.sh makes the data).
"""
import pathlib

from twjax import configlib

AGENT_OBSERVED = pathlib.Path(__file__).resolve().parent / "agent_observed.py"
DATA = "data/ablation/n384"
SEEDS = [0, 1, 2]


def get_config(arg=None):
    config = configlib.load(str(AGENT_OBSERVED))
    config.data.update(train=f"{DATA}/train-*.jsonl", valid=f"{DATA}/valid-*.jsonl")
    config.agent.observe_setup = False
    return config


def get_sweep(arg=None):
    seeds = [{"train.seed": seed, "data.seed": seed} for seed in SEEDS]
    return seeds + [{"data.batch_size": 4, **seed} for seed in seeds]
