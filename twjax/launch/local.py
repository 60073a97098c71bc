"""Runs an experiment's trials as local subprocesses and keeps the launch records.

Layout (EXPROOT/EXPERIMENT is also the experiment's TensorBoard logdir):
    EXPROOT/EXPERIMENT/trials.jsonl        one line per trial of the grid: name, overrides, status, metrics, ...
    EXPROOT/EXPERIMENT/TRIAL/              the trial's --workdir (the program writes tb/, checkpoints/ here)
    EXPROOT/EXPERIMENT/TRIAL/trial.json    the launch record; status "ok" means a re-run skips the trial
    EXPROOT/EXPERIMENT/TRIAL/log.txt       stdout and stderr of every attempt
    EXPROOT/EXPERIMENT/TRIAL/hparams/      the trial's row of the hparams table
    EXPROOT/EXPERIMENT/results.{md,json,png}  trials grouped over seeds: mean and CI (results.py)
The Runner is shared with the TPU VM launcher, whose steps are gcloud commands run from here.
A failed trial is reported and recorded; the rest of the grid goes on.
"""
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time

from twjax.launch import hparams, results

RECORD = "trial.json"
LOG = "log.txt"
SUMMARY = "trials.jsonl"
FAILED_LOG_LINES = 15
KILL_GRACE_S = 60


@dataclasses.dataclass(frozen=True)
class Step:
    argv: list
    required: bool = True  # a failed optional step (e.g. fetching logs back) does not fail the trial


def write_json_atomic(path: pathlib.Path, value) -> None:
    results.write_text_atomic(path, json.dumps(value, indent=1) + "\n")


def read_record(trial_dir: pathlib.Path) -> dict | None:
    path = trial_dir / RECORD
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a record cut short by a crash: the trial is simply run again


def finished(experiment, records_dir: pathlib.Path) -> set[str]:
    """Names of trials already done; refuses a records dir holding a different trial under the same name."""
    done = set()
    for trial in experiment.trials:
        record = read_record(records_dir / trial.name)
        if record is None:
            continue
        if record.get("overrides") != json.loads(json.dumps(trial.overrides)):
            raise SystemExit(f"{records_dir / trial.name} holds a trial with overrides {record.get('overrides')}, "
                             f"not {trial.overrides}: use another --exproot or --name")
        if record.get("status") == "ok":
            done.add(trial.name)
    return done


class Runner:
    """Runs trials on `slots` (one trial at a time per slot), recording each in records_dir/TRIAL."""

    def __init__(self, experiment, records_dir: pathlib.Path, slots: list, steps_fn, timeout: float | None = None,
                 out=sys.stdout):
        self.experiment = experiment
        self.records_dir = records_dir
        self.slots = slots
        self.steps_fn = steps_fn  # (trial, slot) -> list[Step]
        self.timeout = timeout
        self.out = out
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.running: dict[str, subprocess.Popen] = {}

    def say(self, text: str) -> None:
        with self.lock:
            print(text, file=self.out, flush=True)

    def run(self) -> int:
        done = finished(self.experiment, self.records_dir)
        todo = [t for t in self.experiment.trials if t.name not in done]
        for name in sorted(done):
            self.say(f"skip {name} (finished)")
        free = queue.Queue()
        for slot in self.slots:
            free.put(slot)

        def work(index_trial):
            index, trial = index_trial
            slot = free.get()
            try:
                return self.run_trial(trial, slot, f"[{index}/{len(todo)}]")
            finally:
                free.put(slot)

        interrupted = False
        futures = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(self.slots))) as pool:
            # The submissions are inside the try: a Ctrl-C that lands while trials are still being
            # queued must stop the ones already running too (else the pool's exit waits for them).
            try:
                for item in enumerate(todo, 1):
                    futures.append(pool.submit(work, item))
                wait_waking(futures)
            except KeyboardInterrupt:
                interrupted = True
                self.stop()
                wait_waking(futures)
        for future in futures:
            future.result()  # a bug in the launcher itself is raised, not swallowed
        records = write_summary(self.experiment, self.records_dir)
        self.say(format_summary(records, self.records_dir, self.experiment.summary_metrics))
        results.write(records, self.records_dir, self.experiment.summary_metrics)
        self.say(f"results: {self.records_dir / results.MARKDOWN} (and .json, .png)")
        if interrupted:
            return 130
        return 0 if all(r["status"] == "ok" for r in records) else 1

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            processes = list(self.running.values())
        kill_groups(processes)

    def run_trial(self, trial, slot, tag: str) -> dict:
        trial_dir = self.records_dir / trial.name
        trial_dir.mkdir(parents=True, exist_ok=True)
        steps = self.steps_fn(trial, slot)
        record = {"name": trial.name, "overrides": trial.overrides, "commands": [shlex.join(s.argv) for s in steps],
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "running", "log": LOG}
        if self.stopping.is_set():
            return record
        self.say(f"{tag} start {trial.name}")
        # A retry skips the required steps that succeeded before (e.g. train, when only evaluate failed).
        previous = read_record(trial_dir) or {}
        reusable = previous.get("step_results", []) if previous.get("commands") == record["commands"] else []
        start = time.monotonic()
        results, status, returncode = [], "ok", 0
        with open(trial_dir / LOG, "ab") as log:
            log.write(f"=== attempt {record['started']}\n".encode())
            for index, step in enumerate(steps):
                if step.required and index < len(reusable) and reusable[index]["status"] == "ok":
                    log.write(f"$ {shlex.join(step.argv)}\n=== step done in an earlier attempt: skipped\n".encode())
                    results.append(reusable[index])
                    continue
                remaining = None if self.timeout is None else self.timeout - (time.monotonic() - start)
                step_status, code, output = self.run_step(trial.name, step, log, trial_dir / LOG, remaining)
                results.append({"status": step_status, "metrics": hparams.last_json_object(output)})
                if step_status != "ok" and (step.required or step_status != "failed"):
                    status, returncode = step_status, code
                    break
        metrics = hparams.read_metrics_log(trial_dir)
        for result in results:
            metrics.update(result["metrics"])
        try:
            metrics.update(hparams.read_metrics_file(trial_dir))
        except ValueError as error:
            self.say(f"warning: {error}")
        record.update(status=status, returncode=returncode, metrics=metrics, step_results=results,
                      duration_s=round(time.monotonic() - start, 3))
        if status == "ok":
            with self.lock:
                hparams.write(trial_dir, trial.overrides, metrics)
        write_json_atomic(trial_dir / RECORD, record)
        self.report(tag, record, trial_dir)
        return record

    def run_step(self, name: str, step: Step, log, log_path: pathlib.Path, remaining: float | None):
        if remaining is not None and remaining <= 0:
            return "timeout", None, ""
        log.write(f"$ {shlex.join(step.argv)}\n".encode())
        log.flush()
        offset = log.tell()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            process = subprocess.Popen(step.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, start_new_session=True)
        except OSError as error:
            log.write(f"cannot start: {error}\n".encode())
            return "failed", None, ""
        with self.lock:
            self.running[name] = process
        if self.stopping.is_set():
            kill_groups([process])
        try:
            code = process.wait(timeout=remaining)
            status = "ok" if code == 0 else ("interrupted" if self.stopping.is_set() else "failed")
        except subprocess.TimeoutExpired:
            kill_groups([process])
            code, status = process.wait(), "timeout"
        finally:
            with self.lock:
                self.running.pop(name, None)
        log.flush()
        with open(log_path, "rb") as reader:
            reader.seek(offset)
            output = reader.read().decode("utf-8", errors="replace")
        if status != "ok":
            log.write(f"=== step {status} (exit {code})\n".encode())
        return status, code, output

    def report(self, tag: str, record: dict, trial_dir: pathlib.Path) -> None:
        if record["status"] == "ok":
            shown = hparams.shown(record["metrics"], self.experiment.summary_metrics)
            self.say(f"{tag} ok {record['name']} ({record['duration_s']:.1f}s) {shown}".rstrip())
            return
        if record["status"] == "interrupted":
            self.say(f"{tag} stopped {record['name']} (interrupted); log {trial_dir / LOG}")
            return
        tail = (trial_dir / LOG).read_bytes().decode("utf-8", errors="replace").splitlines()[-FAILED_LOG_LINES:]
        self.say(f"{tag} FAILED {record['name']}: {record['status']} (exit {record['returncode']}); "
                 f"log {trial_dir / LOG}\n" + "\n".join("    " + line for line in tail))


def wait_waking(futures: list[concurrent.futures.Future]) -> None:
    """Waits for every future, waking twice a second.

    When the kernel hands Ctrl-C to a worker thread, Python only flags it for the main thread, which
    acts on it when it next wakes; an untimed wait would sleep through it until the trials end.
    """
    while concurrent.futures.wait(futures, timeout=0.5).not_done:
        pass


def kill_groups(processes: list[subprocess.Popen]) -> None:
    """Stops trials' own process groups (each started in a new session): TERM to all, then KILL stragglers.

    The grace period lets `twjax train` write its checkpoint on SIGTERM, so a re-run resumes.
    """
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + KILL_GRACE_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def write_summary(experiment, records_dir: pathlib.Path) -> list[dict]:
    records = []
    for trial in experiment.trials:
        record = read_record(records_dir / trial.name) or {"name": trial.name, "overrides": trial.overrides,
                                                           "status": "pending"}
        records.append(record)
    records_dir.mkdir(parents=True, exist_ok=True)
    results.write_text_atomic(records_dir / SUMMARY, "".join(json.dumps(r) + "\n" for r in records))
    return records


def format_summary(records: list[dict], records_dir: pathlib.Path, keys: tuple[str, ...] = ()) -> str:
    counts = {}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    lines = [f"{records_dir}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))]
    for record in records:
        shown = hparams.shown(record.get("metrics", {}), keys)
        lines.append(f"  {record['status']:<11} {record['name']}  {shown}".rstrip())
    lines.append(f"records: {records_dir / SUMMARY}; TensorBoard: tensorboard --logdir {records_dir}")
    return "\n".join(lines)


def main(experiment, args, out=sys.stdout) -> int:
    records_dir = pathlib.Path(args.exproot).absolute() / experiment.name
    twjax_argv = [sys.executable, "-m", "twjax"]

    def steps(trial, _slot):
        return [Step(argv) for argv in experiment.steps(trial, str(records_dir / trial.name), twjax_argv)]

    if args.dry_run:
        done = finished(experiment, records_dir)
        for trial in experiment.trials:
            if trial.name in done:
                print(f"# skip {trial.name} (finished)", file=out)
                continue
            for step in steps(trial, None):
                print(shlex.join(step.argv), file=out)
        return 0
    if args.parallel < 1:
        raise SystemExit("--parallel must be at least 1")
    runner = Runner(experiment, records_dir, list(range(args.parallel)), steps, args.trial_timeout, out)
    return runner.run()
