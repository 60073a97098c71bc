"""Agent training configs: `twjax agent train --config configs/agent.py:PRESET --workdir W`.

The trainer's config (configs/terminal.py, same presets) with data.regime "agent", plus `agent`:
the regime (A | B | C | RL, see twjax/agent_train.py) and its knobs. Fields left out of an
experiment file's `agent` block take agent_train.AGENT_DEFAULTS.
"""
import pathlib

import ml_collections

from twjax import agent_train, configlib

BASE = pathlib.Path(__file__).resolve().parent / "terminal.py"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = arg or "tiny"
    config = configlib.load(f"{BASE}:{preset}")
    config.data.regime = "agent"
    # The verifier probes are the learned terminal's lesson (its learned reward), never an agent's
    # move; injected mistakes stay in the context the agent learns to recover from, unimitated.
    config.data.drop_labels = ("verify",)
    config.data.unimitated_labels = ("error",)
    config.agent = ml_collections.ConfigDict(dict(agent_train.AGENT_DEFAULTS))
    if preset == "tiny":
        # Sized for the 2-core CPU host: minutes per regime.
        config.train.steps = 60
        config.train.eval_every = 60
        config.train.ckpt_every = 60
        config.train.progress = False
        config.optim.warmup_steps = 10
        config.agent.update(rounds=2, round_steps=10, tasks_per_round=16, rl_steps=10, tasks_per_step=2,
                            group_size=4, max_turns=4, max_command_tokens=32, max_output_tokens=96)
    return config
