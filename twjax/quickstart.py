"""`twjax quickstart --workdir W`: the whole idea, end to end, on a laptop-class CPU.

Stages, each the `twjax` command a researcher would type (printed before it runs):
  1. image      the base root file system (and docker image when an engine answers)
  2. collect    procedural tasks run for real in sandboxes -> train / valid / test transcripts
  3. tokenizer  sentencepiece on the training transcripts
  4. train      the tiny learned terminal (TensorBoard under W/terminal/tb)
  5. evaluate   fidelity and exposure-bias curves against the baselines (W/terminal/eval)
  6. agent      a regime-A agent on the same transcripts, judged in real sandboxes and inside the
                learned terminal (W/agent: pass rates, the sim-to-real gap, every attempt)
  7. report     W/REPORT.md: what was measured and where to look
A finished stage is recorded in W/quickstart.json and skipped on a re-run; an interrupted stage
resumes where it stopped (collect and train are resumable themselves).
"""
import argparse
import glob
import json
import pathlib
import shlex
import signal
import subprocess
import sys
import time

from twjax.harness import image
from twjax.harness.session import backend_status


def stage_commands(workdir: pathlib.Path, args) -> list[tuple[str, list[str]]]:
    data, terminal, agent = workdir / "data", workdir / "terminal", workdir / "agent"
    train_glob, valid_glob, test_glob = (str(data / f"{split}-*.jsonl") for split in ("train", "valid", "test"))
    tokenizer = data / "tokenizer.model"
    return [
        ("collect", ["collect", "--config", args.data_config, "--out", str(data),
                     f"--config.backend={args.backend}"]),
        ("tokenizer", ["tokenizer", "train", "--episodes", train_glob, "--out", str(tokenizer),
                       "--vocab-size", str(args.vocab_size)]),
        ("train", ["train", "--config", args.model_config, "--workdir", str(terminal),
                   f"--config.data.train={train_glob}", f"--config.data.valid={valid_glob}",
                   f"--config.data.tokenizer={tokenizer}",
                   *([f"--config.train.steps={args.steps}"] if args.steps else [])]),
        ("evaluate", ["evaluate", "--workdir", str(terminal), "--episodes", test_glob,
                      "--train-episodes", train_glob, "--max-episodes", str(args.eval_episodes),
                      "--backend", args.backend, "--json"]),
        ("agent", ["agent", "train", "--config", args.agent_config, "--workdir", str(agent),
                   "--config.agent.regime=A", f"--config.data.train={train_glob}",
                   f"--config.data.valid={valid_glob}", f"--config.data.tokenizer={tokenizer}",
                   f"--config.agent.terminal={terminal}", f"--config.agent.backend={args.backend}"]),
    ]


def run_stage(name: str, command: list[str], log_dir: pathlib.Path) -> float:
    printable = "twjax " + " ".join(shlex.quote(part) for part in command)
    print(f"\n== {name}: {printable}", flush=True)
    started = time.perf_counter()
    with open(log_dir / f"{name}.log", "a") as log:
        process = subprocess.Popen([sys.executable, "-m", "twjax", *command], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")
        # A stop aimed at the quickstart reaches the stage too, so the trainer checkpoints on SIGTERM
        # and a re-run resumes from there.
        forward = lambda signum, _frame: process.send_signal(signum)  # noqa: E731
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for line in process.stdout:
                sys.stdout.write(line)
                log.write(line)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if process.wait() != 0:
            raise SystemExit(f"quickstart stage {name!r} failed (exit {process.returncode}); "
                             f"its log is {log_dir / (name + '.log')}; re-run to resume")
    return time.perf_counter() - started


def fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]]


FIDELITY_KEYS = ("correct", "exact", "exact_norm", "edit_sim", "line_f1", "exit_acc", "cwd_acc")


def fidelity_table(sections: dict[str, dict]) -> list[str]:
    return table(["", *FIDELITY_KEYS], [[name, *(sec.get(k, "") for k in FIDELITY_KEYS)]
                                        for name, sec in sections.items()])


def write_report(workdir: pathlib.Path, timings: dict) -> pathlib.Path:
    """A short markdown report: the numbers of this run and where to look for the rest."""
    stats = json.loads((workdir / "data" / "stats.json").read_text())
    evaluation = json.loads((workdir / "terminal" / "eval" / "report.json").read_text())
    metrics = [json.loads(line) for line in (workdir / "terminal" / "metrics.jsonl").read_text().splitlines()
               if line.strip()]
    last_eval = [m for m in metrics if "eval/loss" in m][-1]
    split_keys = ("episodes", "turns", "error_turn_fraction", "recovery_turn_fraction", "verified_fraction")
    sections = {"teacher_forced": evaluation["teacher_forced"], "self_conditioned": evaluation["self_conditioned"],
                **{f"baseline: {name}": b for name, b in evaluation["baselines"].items()}}
    bias = evaluation["exposure_bias"]
    lines = [
        "# twjax quickstart report", "",
        "Real transcripts from procedural tasks run in sandboxes, a tiny learned terminal trained on them, and "
        "its fidelity on held-out sessions (the test split: unseen parameters and a held-out family), beside "
        "the baselines.", "",
        "## Stages", "", *table(["stage", "seconds"], [[n, round(t)] for n, t in timings.items()]), "",
        f"## Data (`data/`, details in `data/stats.json`; {stats['failed_tasks']} tasks failed their check, "
        "see `data/failures.jsonl`)", "",
        *table(["split", *split_keys], [[name, *(split[k] for k in split_keys)]
                                        for name, split in sorted(stats["splits"].items())]), "",
        "## Training (`tensorboard --logdir terminal/tb`; scalars also in `terminal/metrics.jsonl`)", "",
        f"Step {last_eval['step']}: valid loss {last_eval['eval/loss']:.3f} nats on terminal tokens "
        f"(unigram baseline {last_eval['eval/unigram_baseline']:.3f}).", "",
        "## Fidelity on the test split (`terminal/eval/report.json`, per turn: `terminal/eval/turns.jsonl`)", "",
        "All turns:", "", *fidelity_table(sections), "",
        "Turns whose real output is not empty (an always-empty guess scores 0 here):", "",
        *fidelity_table({name: sec.get("nonempty", {}) for name, sec in sections.items()}), "",
        "Of those, the turns whose every output line appeared earlier in the session (a perfect copier "
        "could write them; the rest need a computation or show state the session never printed):", "",
        *fidelity_table({name: sec.get("copyable", {}) for name, sec in sections.items()}), "",
        "## Exposure bias (teacher-forced vs self-conditioned)", "",
        *table(["metric", "area between curves", "excess-error fraction"],
               [[k, bias["area_between"][k]["area"], bias["excess_error_fraction"].get(k, "")]
                for k in ("correct", "exact_norm", "edit_sim")]), "",
    ]
    pngs = sorted(glob.glob(str(workdir / "terminal" / "eval" / "**" / "*.png"), recursive=True))
    lines += ["Plots (per turn and per context length, with bootstrap intervals; survival with its fits):", "",
              *[f"- `{pathlib.Path(p).relative_to(workdir)}`" for p in pngs], ""]
    lines += agent_section(json.loads((workdir / "agent" / "metrics.json").read_text())["eval"])
    report = workdir / "REPORT.md"
    report.write_text("\n".join(lines))
    return report


AGENT_KEYS = ("greedy", "pass@1", "pass@2")


def agent_section(evaluation: dict) -> list[str]:
    """Pass rates of the quickstart's agent by judge and split, beside the sim-to-real gap."""
    rows = [[f"{judge} / {split}", *(evaluation[f"{judge}/{split}"]["all"].get(k, "") for k in AGENT_KEYS)]
            for judge in ("real", "learned") for split in ("in_distribution", "held_out_families")
            if f"{judge}/{split}" in evaluation]
    gaps = [f"`{name}` {value:.3f}" for name, value in sorted(evaluation.items()) if name.startswith("sim_to_real")]
    return ["## Agent (regime A: assistant-masked SFT on the same transcripts; `agent/metrics.json`)", "",
            "Judged by the tasks' verifiers in real sandboxes and inside the learned terminal; every attempt "
            "with its verdict in `agent/eval/`.", "",
            *table(["judge / split", *AGENT_KEYS], rows), "",
            "Sim-to-real gap (learned minus real): " + ", ".join(gaps) + ".", ""]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--data-config", default="configs/data/tiny.py")
    parser.add_argument("--model-config", default="configs/terminal.py:tiny")
    parser.add_argument("--agent-config", default="configs/agent.py:tiny")
    parser.add_argument("--steps", type=int, default=0,
                        help="training steps of the terminal (default: the preset's; tiny's 250 take ~5 min here)")
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--backend", default="bwrap",
                        help="sandbox for collection and the agent's real judge: bwrap (fast start), docker, auto")


def main(args) -> int:
    workdir = pathlib.Path(args.workdir).resolve()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    progress_path = workdir / "quickstart.json"
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else {"done": {}}
    started = time.perf_counter()

    if "image" not in progress["done"]:
        print("== image: twjax image build --backend bwrap", flush=True)
        began = time.perf_counter()
        image.ensure("bwrap")
        if args.backend in ("docker", "auto") and backend_status("docker")[0]:
            image.ensure("docker")
        progress["done"]["image"] = time.perf_counter() - began
        progress_path.write_text(json.dumps(progress, indent=1))
    for name, command in stage_commands(workdir, args):
        if name in progress["done"]:
            print(f"== {name}: done in an earlier run, skipped", flush=True)
            continue
        progress["done"][name] = run_stage(name, command, workdir / "logs")
        progress_path.write_text(json.dumps(progress, indent=1))
    report = write_report(workdir, progress["done"])
    print(f"\nquickstart finished in {time.perf_counter() - started:.0f} s (this run); report: {report}")
    print(report.read_text())
    return 0
