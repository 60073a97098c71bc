"""C and RL off the best A yet, inside a terminal that sees each task's files while the agent does not:

  regime=A       experiments/agent_context's copy-head A (1,024-token windows, 8 a batch, 500 updates
                 on data/ablation/n384, sessions opening with the task alone), the very runs of
                 agent_context_imagined (agent.shared_sft points at them: nothing is retrained), here
                 judged in real containers and inside the terminal below
  regime=C / RL  branched off it, inside runs/fidelity/observed-pointer-n384: the copy-head terminal
                 trained on the same tasks' transcripts opened by an observation of their files
                 (tools/fidelity_cpu.sh observed-pointer-n384), and inside observed-pointer-n384-agent:
                 that terminal fine-tuned on seed 0's A sessions inside it, replayed for real and
                 judged by the real verifier (tools/context_sessions_cpu.sh --observed 0); and C in
                 the latter re-checking every pass (agent.real_check_fraction=1: only the imagined
                 sessions that pass for real are kept), as 2 in 5 of the passes it keeps fail for real

In agent_context_imagined the terminal, trained on sessions without an observation, guessed at files it
had never seen: it answered the agents' first commands with "No such file or directory" and passed
1-3 of 34 agent sessions where 17-24 pass for real. In agent_observed both models saw the
observation and the agent lost its passes (0.127). Here the observation opens the terminal's view
of every session alone (agent.observe_terminal_only, rollout.TerminalPrompts): the terminal reads
the state it was trained to read, the agent the prompt it was trained on. On 2026-12-06 (README)
it answered the agents' first commands right 0.74-0.77 of the time (0.48-0.64 without the
observation), and fine-tuned passed 16-21 of 34 greedy attempts where 17-23 pass for real (65 of
its 106 passes on the same tasks as the real ones); C kept 120 imagined sessions, 25 of 42
re-checks held, and C (pass@1 0.426) and RL (0.392) stayed within A's spread (0.392). C re-checking
every pass kept 87 real passes and did no better (0.598 greedy against A's 0.588).
Trial times on 2 cores, two sweeps side by side: A 104-166 s (judged only), C 254-410 s, RL
269-378 s; C re-checking every pass 478-525 s, three at once (--parallel 3).
`bash tools/fidelity_cpu.sh observed-pointer-n384` makes the terminal; agent_context_imagined's A
trials (its shared-sft runs) must have run; then `twjax sweep experiments/agent_terminal_observes.py
--launcher local --exproot runs/sweeps --only` the A trials and those in the first terminal, then
`bash tools/context_sessions_cpu.sh --observed 0`, then the whole sweep.
"""
import pathlib

from twjax import configlib

AGENT_CONTEXT = pathlib.Path(__file__).resolve().parent / "agent_context.py"
TERMINALS = ("runs/fidelity/observed-pointer-n384", "runs/fidelity/observed-pointer-n384-agent")
# From a trial's workdir (runs/sweeps/agent_terminal_observes/TRIAL): agent_context_imagined's A runs.
SHARED_SFT = "../../agent_context_imagined/shared-sft"
SEEDS = [0, 1, 2]


def get_config(arg=None):
    config = configlib.load(str(AGENT_CONTEXT))
    config.agent.update(terminal=TERMINALS[0], observe_setup=True, observe_terminal_only=True, shared_sft=SHARED_SFT)
    return config


def get_sweep(arg=None):
    """Seed by seed: A (judged only, inside the first terminal: its run exists), then C and RL off
    it in each terminal, then C re-checking every pass in the fine-tuned one."""
    points = []
    for seed in SEEDS:
        seeds = {"train.seed": seed, "data.seed": seed}
        points.append(seeds)
        for terminal in TERMINALS:
            points += [{"agent.regime": "C", "agent.terminal": terminal, **seeds},
                       {"agent.regime": "RL", "agent.lambda_env": 0.1, "agent.terminal": terminal, **seeds}]
        points.append({"agent.regime": "C", "agent.terminal": TERMINALS[1], "agent.real_check_fraction": 1.0, **seeds})
    return points
