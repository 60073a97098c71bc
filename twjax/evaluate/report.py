"""`twjax evaluate`: the fidelity and exposure-bias report of a trained learned terminal.

    twjax evaluate --workdir W --episodes test.jsonl [--train-episodes 'data/train-*.jsonl']
                   [--max-episodes N] [--probe-every K --backend auto] --json

Writes W/eval/report.json (everything, curves included), W/eval/turns.jsonl (one scored turn a
line, per regime and baseline), W/eval/plots/*.png and TensorBoard events in W/eval/tb; prints a
summary and, with --json, the report without its curves as one JSON object on the last line.
"""
import argparse
import json
import math
import pathlib
import sys
import time

from twjax import episode as episode_lib


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="training workdir of the learned terminal")
    parser.add_argument("--episodes", required=True, help="episode JSONL file(s) to evaluate on (comma-separated globs)")
    parser.add_argument("--train-episodes", default=None,
                        help="comma-separated globs of training episodes for the n-gram baseline")
    parser.add_argument("--max-episodes", type=int, default=None)
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--regimes", default="teacher_forced,self_conditioned")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples for the intervals")
    parser.add_argument("--probe-every", type=int, default=0,
                        help="file-system probe every K turns (and at the last); 0 = none")
    parser.add_argument("--backend", default="auto", help="harness backend for the real probes")
    parser.add_argument("--closed-loop", nargs=2, metavar=("LEARNED.jsonl", "REAL.jsonl"), default=None,
                        help="closed-loop rollouts from the rollout engine: episodes in the learned terminal "
                             "and the same commands replayed for real, matched by episode id")
    parser.add_argument("--baselines-only", action="store_true",
                        help="score only the baselines (no model is loaded; W is only where outputs go)")
    parser.add_argument("--out", default=None, help="output directory (default W/eval)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on the last line")


def json_safe(value):
    """NaN and infinities become null so the output is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def without_curves(report: dict) -> dict:
    """The report minus bulky arrays (curves, survival product): what --json prints."""
    def strip(section):
        return {k: v for k, v in section.items() if k != "curves"}
    out = {}
    for key, value in report.items():
        if key == "baselines":
            out[key] = {name: strip(section) for name, section in value.items()}
        elif key == "exposure_bias":
            out[key] = {k: v for k, v in value.items() if k != "independent_product"}
        elif isinstance(value, dict) and "curves" in value:
            out[key] = strip(value)
        else:
            out[key] = value
    return out


def token_context(tok):
    """Context measure shared with the learned terminal: tokens of task + real history + command + <out>."""
    def context_of(episode: episode_lib.Episode, turn_index: int) -> int:
        turns = episode.turns
        return (len(tok.encode_task(episode.task)) + sum(len(tok.encode_turn(t)[0]) for t in turns[:turn_index])
                + len(tok.encode_command(turns[turn_index].command)) + 1)
    return context_of


def run_baselines(episodes, train_globs: str | None, context_of) -> tuple[dict, dict]:
    """Trivial always; n-gram when training episodes are given (the trivial baseline then also takes
    the usual starting cwd from them, so turn 0's "cwd unchanged" means the usual start)."""
    from twjax.evaluate import baselines

    if not train_globs:
        return {"trivial": baselines.baseline_records(baselines.TrivialBaseline(), episodes, context_of)}, {}
    paths = episode_lib.expand_globs(train_globs)
    ngram = baselines.NGramBaseline().fit(e for p in paths for e in episode_lib.read_jsonl(p))
    trivial = baselines.TrivialBaseline(ngram.initial_cwd)
    found = {"trivial": baselines.baseline_records(trivial, episodes, context_of),
             "ngram": baselines.baseline_records(ngram, episodes, context_of)}
    return found, {"train_files": len(paths), "initial_cwd": ngram.initial_cwd,
                   "ngram_backoff_hits": {str(k): v for k, v in ngram.hits.items()}}


def closed_loop_pairs(learned_path: str, real_path: str) -> list:
    """(learned, real) episode pairs matched by id; an id on one side only is an error. Sessions a
    mixed batch ran against real sandboxes (`terminal: "real"`) have no imagined side and are skipped,
    so `twjax rollout --out L --replay-out R` gives the pair of files as written."""
    learned = {e.id: e for e in episode_lib.read_jsonl(learned_path) if e.extra.get("terminal") != "real"}
    real = {e.id: e for e in episode_lib.read_jsonl(real_path)}
    if set(learned) != set(real):
        missing = sorted(set(learned) ^ set(real))[:5]
        raise ValueError(f"closed-loop files do not hold the same episode ids (e.g. {missing})")
    return [(learned[i], real[i]) for i in sorted(real)]


def write_outputs(report: dict, records: dict, out_dir: pathlib.Path, step: int) -> list[pathlib.Path]:
    from tensorboardX import SummaryWriter

    from twjax.evaluate import plots, tensorboard_report

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(json_safe(report), indent=1) + "\n")
    with open(out_dir / "turns.jsonl", "w") as handle:
        for section, recs in records.items():
            for record in recs:
                handle.write(json.dumps(json_safe({"section": section, **record.to_json()})) + "\n")
    writer = SummaryWriter(str(out_dir / "tb"))
    try:
        tensorboard_report.write(writer, report, step)
    finally:
        writer.close()
    return plots.write_all(report, out_dir / "plots")


def main(args) -> int:
    from twjax import checkpoint_io
    from twjax.evaluate import fidelity, induction
    from twjax.evaluate.baselines import character_context

    started = time.perf_counter()
    episodes = [ep for path in episode_lib.expand_globs(args.episodes) for ep in episode_lib.read_jsonl(path)]
    if args.max_episodes is not None:
        episodes = episodes[:args.max_episodes]
    if not episodes:
        print(f"no episodes in {args.episodes}", file=sys.stderr)
        return 1
    regimes = [] if args.baselines_only else [r for r in args.regimes.split(",") if r]
    pairs = closed_loop_pairs(*args.closed_loop) if args.closed_loop else None
    closed = {"closed_loop": fidelity.closed_loop_records(pairs)} if pairs else {}
    if args.baselines_only:
        baseline_records, baseline_info = run_baselines(episodes, args.train_episodes, character_context)
        report = fidelity.build_report(closed, baseline_records, None, args.n_boot,
                                       {"episodes": len(episodes), "turns": sum(len(e.turns) for e in episodes)})
        runs, step = {}, None
    else:
        _, tok, model = checkpoint_io.load_for_inference(args.workdir, step=args.step)
        baseline_records, baseline_info = run_baselines(episodes, args.train_episodes, token_context(tok))
        settings = fidelity.EvalSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                         n_boot=args.n_boot, probe_every=args.probe_every)
        real_probes = None
        if args.probe_every > 0:
            real_probes = lambda eps, wanted: fidelity.harness_probes(eps, wanted, backend=args.backend)  # noqa: E731
        report, runs = fidelity.evaluate_model(model, tok, episodes, settings, regimes=regimes,
                                               baselines=baseline_records, real_probes=real_probes,
                                               closed_loop_pairs=pairs)
        step = args.step if args.step is not None else latest_step(args.workdir)
        report["copy_probe"] = induction.copy_probes(model, tok)
    report["meta"].update(workdir=str(args.workdir), episodes_file=str(args.episodes), step=step,
                          seconds=round(time.perf_counter() - started, 1), **baseline_info)
    out_dir = pathlib.Path(args.out) if args.out else pathlib.Path(args.workdir) / "eval"
    records = {**{r: run.records for r, run in runs.items()}, **closed,
               **{f"baseline_{name}": recs for name, recs in baseline_records.items()}}
    pngs = write_outputs(report, records, out_dir, step or 0)
    shown = [r for r in (*regimes, "closed_loop") if r in report]
    for name in [*shown, *(f"baselines.{b}" for b in report["baselines"])]:
        section = report["baselines"][name.split(".")[1]] if name.startswith("baselines.") else report[name]
        print(f"{name:28s} correct {section['correct']:.3f}  exact_norm {section['exact_norm']:.3f}  "
              f"edit_sim {section['edit_sim']:.3f}  non-empty correct {section['nonempty']['correct']:.3f}  "
              f"copyable correct {section['copyable']['correct']:.3f} "
              f"({section['copyable']['n']}/{section['nonempty']['n']} non-empty)",
              file=sys.stderr)
    verdicts = report.get("teacher_forced", {}).get("verdicts")
    if verdicts:
        shown = {key: "n/a" if verdicts[key] is None else f"{verdicts[key]:.3f}"
                 for key in ("balanced_accuracy", "pass_precision", "pass_auc")}
        print(f"verifier verdicts (teacher-forced, {verdicts['n']} probes, {verdicts['real_pass_rate']:.3f} pass for "
              f"real): accuracy {verdicts['accuracy']:.3f}, balanced {shown['balanced_accuracy']}, "
              f"predicted pass {verdicts['predicted_pass_rate']:.3f}, of them real {shown['pass_precision']}; "
              f"pass probability AUC {shown['pass_auc']}", file=sys.stderr)
    if "copy_probe" in report:
        probe = report["copy_probe"]
        print(f"copy probe (synthetic [A, B, A]): accuracy {probe['accuracy']:.3f}; names of repeated lines: "
              f"{probe['line_names']['shared_prefix']:.3f} after a shared prefix, "
              f"{probe['line_names']['unique_prefix']:.3f} after unique ones, "
              f"{probe['line_names']['names_column']:.3f} as a names column "
              f"({probe['line_names']['names_column_session']:.3f} in a session's shape, "
              f"{probe['line_names']['names_column_session_headers']:.3f} after header lines)", file=sys.stderr)
        for shape, key in (("", "names_column_predicted"), (" in a session's shape", "names_column_session_predicted")):
            print(f"names column{shape}, what was written: " + ", ".join(
                f"{kind} {share:.3f}" for kind, share in probe[key].items()), file=sys.stderr)
    print(f"wrote {out_dir / 'report.json'}, {len(pngs)} plots, TensorBoard events in {out_dir / 'tb'}",
          file=sys.stderr)
    if args.json:
        print(json.dumps(json_safe(without_curves(report))))
    return 0


def latest_step(workdir) -> int | None:
    checkpoints = pathlib.Path(workdir) / "checkpoints"
    steps = [int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()] if checkpoints.exists() else []
    return max(steps) if steps else None
