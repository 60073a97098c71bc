"""Processes and signals: ps/pgrep, kill/pkill, background jobs, traps.

Worker processes are copies of sleep under distinct names (bin/wk_NAME, bin/job_NAME, ...), so they are found by
their exact process name (pgrep -x), never by a pattern that could match the shell running the check.
"""
from twjax.tasks.families.common import Step, StepFamily, one_of, value_is

WAIT = "for _ in $(seq 1 20); do {cond} && break; sleep 0.05; done; {cond}"


def _workers(rng, names, n, prefix):
    workers = [f"{prefix}{w}"[:15] for w in names.take(n)]
    setup = ["mkdir -p bin"] + [f"cp /bin/sleep bin/{w} && (nohup bin/{w} 100000 >/dev/null 2>&1 &)" for w in workers]
    # Setup returns only once every worker runs: on a loaded machine a check could otherwise see
    # none yet (an empty pgrep made the untouched state pass write_pid's check).
    setup += [WAIT.format(cond=_alive(w)) for w in workers]
    return workers, setup


def _alive(name):
    return f"pgrep -x {name} >/dev/null"


def _dead(name):
    return WAIT.format(cond=f"! pgrep -x {name} >/dev/null")


def kill_one(rng, names):
    workers, setup = _workers(rng, names, rng.randint(2, 3), "wk_")
    victim = rng.choice(workers)
    signal = one_of(rng, "", "-TERM ", "-KILL ", "-9 ")
    text = one_of(rng, f"Stop the running process named {victim}; leave the other workers running.",
                  f"Kill {victim} (it is running in the background). The other wk_* processes must keep running.",
                  f"Terminate the {victim} process{' with SIGKILL' if 'K' in signal or '9' in signal else ''}.")
    return Step(text, [f"pkill {signal}-x {victim}"], [_dead(victim)] + [_alive(w) for w in workers if w != victim],
                setup=setup)


def write_pid(rng, names):
    workers, setup = _workers(rng, names, 2, "app_")
    target = rng.choice(workers)
    out = f"{target}.pid"
    text = one_of(rng, f"Write the PID of the running process {target} to {out}.",
                  f"Find the process ID of {target} and save it in {out}.")
    return Step(text, [f"pgrep -x {target} > {out}"],
                [f'[ -s {out} ] && [ "$(tr -d " \\n" < {out})" = "$(pgrep -x {target})" ]'], setup=setup)


def count_workers(rng, names):
    workers, setup = _workers(rng, names, rng.randint(2, 4), "job_")
    out = "worker_count.txt"
    text = one_of(rng, f"Count how many processes whose names start with job_ are running and write the number to {out}.",
                  f"How many job_* processes are alive right now? Save the number in {out}.")
    return Step(text, [f"pgrep -c '^job_' > {out}"], [value_is(out, len(workers))], setup=setup)


def start_background(rng, names):
    daemon = f"d_{names.one()}"[:15]
    text = one_of(rng, f"Start bin/{daemon} in the background (it should keep running after your command returns).",
                  f"Launch the program bin/{daemon} as a background process.")
    return Step(text, [f"nohup bin/{daemon} 100000 > /dev/null 2>&1 &"], [WAIT.format(cond=_alive(daemon))],
                setup=[f"mkdir -p bin && cp /bin/sleep bin/{daemon}"])


def graceful_stop(rng, names):
    script = f"svc_{names.one()}.sh"[:15]
    state = "state.txt"
    body = (f"#!/bin/bash\ntrap 'echo stopped > {state}; exit 0' TERM\necho running > {state}\n"
            "while true; do sleep 0.1; done\n")
    text = one_of(rng, f"The service script {script} is running. Stop it gracefully with SIGTERM, so that it records "
                       f"\"stopped\" in {state}.",
                  f"Send SIGTERM to the running {script} process (its trap handler will write {state}).")
    setup = [f"chmod +x {script}", f"(nohup ./{script} > /dev/null 2>&1 &)",
             WAIT.format(cond=f"grep -qx running {state} 2>/dev/null")]
    return Step(text, [f"pkill -TERM -x {script}"],
                [WAIT.format(cond=f"grep -qx stopped {state}"), _dead(script)], files={script: body}, setup=setup)


FAMILY = StepFamily("processes", (kill_one, write_pid, count_workers, start_background, graceful_stop))
