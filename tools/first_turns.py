"""How a learned terminal answers an agent's first command, against the real answer.

A greedy attempt at a task starts with the same command inside the learned terminal and in a real
sandbox (the same prompt, the same weights), so the first turns of the two greedy attempts that
`twjax agent eval` writes (learned-SPLIT-greedy.jsonl, real-SPLIT-greedy.jsonl, the same ids)
form a closed-loop pair that the agent's later divergence cannot touch: the terminal answers from
the prompt alone (and the observation, where it sees one).

    .venv/bin/python tools/first_turns.py EVAL_DIR... [--split in_distribution]

prints one JSON object per directory (and one for all of them pooled, "dir": "all"): pairs, first
commands that agree, and over those exact match after normalisation, exit-code accuracy, the
non-empty real outputs matched, and how many outputs say "No such file or directory", learned
against real; then the whole attempts' verdicts: how many pass inside the learned terminal (its
learned verifier), how many for real, and how many both (the same tasks).
"""
import argparse
import json
import pathlib

from twjax.episode import read_jsonl
from twjax.evaluate import metrics

MISSING = "No such file or directory"


def attempt_pairs(eval_dir: pathlib.Path, split: str) -> list:
    """(learned attempt, real attempt) of each task both judges ran greedily."""
    learned = {e.id: e for e in read_jsonl(eval_dir / f"learned-{split}-greedy.jsonl")}
    real = {e.id: e for e in read_jsonl(eval_dir / f"real-{split}-greedy.jsonl")}
    return [(learned[i], real[i]) for i in sorted(learned.keys() & real.keys())]


def agreement(name: str, attempts: list) -> dict:
    pairs = [(learned.turns[learned.n_given], real.turns[real.n_given]) for learned, real in attempts
             if len(learned.turns) > learned.n_given and len(real.turns) > real.n_given]
    same = [(imagined, actual) for imagined, actual in pairs if imagined.command == actual.command]
    scores = [metrics.score_turn(metrics.Prediction(imagined.output, imagined.exit_code, imagined.cwd), actual)
              for imagined, actual in same]
    nonempty = [score for score, (_, actual) in zip(scores, same) if actual.output.strip()]
    return {"dir": name, "pairs": len(pairs), "same_command": len(same),
            "exact_norm": round(sum(s["exact_norm"] for s in scores) / max(len(scores), 1), 3),
            "exit_acc": round(sum(s["exit_acc"] for s in scores) / max(len(scores), 1), 3),
            "nonempty_exact": f"{sum(s['exact_norm'] for s in nonempty):.0f} of {len(nonempty)}",
            "missing_file_learned": sum(MISSING in imagined.output for imagined, _ in same),
            "missing_file_real": sum(MISSING in actual.output for _, actual in same),
            "passed_learned": sum(learned.extra["passed"] for learned, _ in attempts),
            "passed_real": sum(real.extra["passed"] for _, real in attempts),
            "passed_both": sum(learned.extra["passed"] and real.extra["passed"] for learned, real in attempts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_dirs", nargs="+", type=pathlib.Path)
    parser.add_argument("--split", default="in_distribution")
    args = parser.parse_args()
    pooled = []
    for eval_dir in args.eval_dirs:
        attempts = attempt_pairs(eval_dir, args.split)
        pooled += attempts
        print(json.dumps(agreement(str(eval_dir), attempts)))
    if len(args.eval_dirs) > 1:
        print(json.dumps(agreement("all", pooled)))


if __name__ == "__main__":
    main()
