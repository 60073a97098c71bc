"""Is the learned reward what holds C and RL back? The three-way CPU grid's C and RL (same knobs,
seeds and A runs) with a learned terminal whose verifier verdicts are right more often.

The grid's learned terminal (runs/ablation/terminal: 256 tokens, 600 steps) passes 0.57 of A's
greedy attempts against 0.13 real and 0.41 of an untrained agent's, so C keeps no imagined session
and RL's reward is mostly wrong (README). This one is the same tiny preset on the same transcripts
and tokenizer with a 1,024-token context, 1,500 steps (runs/fidelity/recorded, `bash
tools/verifier_terminal_cpu.sh` trains it; on the test transcripts its verdicts are right 0.81 of
the time against the grid terminal's 0.59, what always answering "fail" scores). The second terminal
is that one fine-tuned on the A agents' own sessions replayed for real and closed by the real
verifier (runs/fidelity/recorded-agent, `bash tools/agent_sessions_cpu.sh`), whose verdicts were
learned on sessions like the ones C and RL ask it to judge; the third, fine-tuned on twice as many
with the passing ones six times over (recorded-agent-balanced), finds 6 of 9 passing agent
sessions where the others find none. The fourth is the balanced one fine-tuned on its own imagined
sessions of the A agents, each closed by the real verdict of its replay (recorded-agent-judged,
`bash tools/judged_sessions_cpu.sh`): the sessions C and RL ask it to judge are imagined ones, and
of those the balanced terminal passed, 1 of 16 held for real; with it C also runs re-checking every
pass it keeps (agent.real_check_fraction=1). C and RL branch off the grid's shared A
runs (../../three_way_ablation-cpu/shared-sft), so only their own updates and evaluation run here.
"""
import pathlib

from twjax import configlib

ABLATION = pathlib.Path(__file__).resolve().parent / "three_way_ablation.py"
TERMINALS = ("runs/fidelity/recorded", "runs/fidelity/recorded-agent", "runs/fidelity/recorded-agent-balanced",
             "runs/fidelity/recorded-agent-judged")
SEEDS = [0, 1, 2]


def get_config(arg=None):
    return configlib.load(f"{ABLATION}:cpu")


def get_sweep(arg=None):
    points = []
    for terminal in TERMINALS:
        common = {"agent.terminal": terminal, "agent.shared_sft": "../../three_way_ablation-cpu/shared-sft"}
        for seed in SEEDS:
            seeds = {"train.seed": seed, "data.seed": seed}
            points.append({"agent.regime": "C", **common, **seeds})
            points.append({"agent.regime": "RL", "agent.lambda_env": 0.1, **common, **seeds})
    # The judged terminal's passes are right ~0.4 of the time, under the 0.5 at which C trusts the
    # passes it did not re-check: here C re-checks every pass and keeps only those that hold.
    for seed in SEEDS:
        points.append({"agent.regime": "C", "agent.real_check_fraction": 1.0, "agent.terminal": TERMINALS[-1],
                       "agent.shared_sft": "../../three_way_ablation-cpu/shared-sft",
                       "train.seed": seed, "data.seed": seed})
    return points
