"""The `twjax` console script.

Each subcommand lives in the module that does its work; that module exposes
`add_arguments(parser)` and `main(args) -> int`. Modules are imported only when their command
runs, so `twjax replay` never pays for importing jax. Config overrides (`--config.a.b=value`)
are collected here and handed over as `args.config_overrides`.
"""
import argparse
import importlib
import json
import sys

COMMANDS = {
    "quickstart": ("twjax.quickstart", "run the whole pipeline end to end on this machine"),
    "image build": ("twjax.harness.image", "build the base root file system and docker image"),
    "harness gc": ("twjax.harness.gc", "remove containers and sandboxes left behind by a crash"),
    "replay": ("twjax.harness.replay", "run command sessions for real and record them as episodes"),
    "collect": ("twjax.tasks.collect", "generate tasks and collect train/valid/test transcripts"),
    "tasks export": ("twjax.tasks.harbor_export", "export generated tasks in Harbor layout"),
    "tasks import": ("twjax.tasks.harbor_import", "import Harbor or Terminal-Bench tasks"),
    "tokenizer train": ("twjax.tokenizer", "train the sentencepiece tokenizer on transcripts"),
    "train": ("twjax.train", "train a model (the learned terminal or an agent)"),
    "evaluate": ("twjax.evaluate.report", "fidelity and exposure-bias report of a learned terminal"),
    "rollout": ("twjax.rollout_cli", "roll an agent out against the learned or the real terminal"),
    "agent train": ("twjax.agent_train", "train an agent in one regime of the ablation"),
    "agent eval": ("twjax.agent_eval", "pass@1 / pass@k of an agent on held-out tasks, real and learned terminal"),
    "sweep": ("twjax.launch.sweep", "run an experiment grid locally, on TPU VMs or through XManager"),
    "bench harness": ("twjax.harness.bench", "benchmark the real terminal"),
    "bench collect": ("twjax.tasks.bench", "benchmark transcript collection"),
    "bench data": ("twjax.data", "benchmark the input pipeline (tokens/s, padding)"),
    "bench train": ("twjax.bench_train", "benchmark training throughput and MFU"),
    "bench rollout": ("twjax.bench_rollout", "benchmark the jitted rollout loop"),
    "bench ops": ("twjax.bench_ops", "where a train or rollout step spends its time, per compiled operation"),
}
CONFIG_PREFIX = "--config."
COMMAND_WORDS = {word for name in COMMANDS for word in name.split()}


def print_result(result: dict, as_json: bool) -> None:
    """A benchmark's result: one JSON object on the last line with --json, else aligned lines."""
    if as_json:
        print(json.dumps(result))
    else:
        width = max(map(len, result), default=0)
        print("\n".join(f"{key:>{width}}: {value}" for key, value in result.items()))


def split_config_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Pulls `--config.a.b=value` (or `--config.a.b value`) out of argv."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith(CONFIG_PREFIX):
            if "=" in token:
                overrides.append(token[len("--config."):])
            elif i + 1 < len(argv):
                overrides.append(token[len("--config."):] + "=" + argv[i + 1])
                i += 1
            else:
                raise SystemExit(f"{token} needs a value")
        else:
            rest.append(token)
        i += 1
    return rest, overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twjax", description=__doc__.splitlines()[0])
    groups = {(): parser.add_subparsers(dest="command", required=True, metavar="COMMAND")}
    for name, (module, help_text) in COMMANDS.items():
        words = name.split()
        for depth in range(1, len(words)):
            key = tuple(words[:depth])
            if key not in groups:
                parent = groups[key[:-1]].add_parser(key[-1], help=f"{key[-1]} subcommands")
                groups[key] = parent.add_subparsers(dest="_".join(key), required=True, metavar="SUB")
        sub = groups[tuple(words[:-1])].add_parser(words[-1], help=help_text)
        sub.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, overrides = split_config_overrides(argv)
    parser = build_parser()
    wants_help = [w for w in argv if w in ("-h", "--help")]
    if wants_help and not any(w in COMMAND_WORDS for w in argv):
        parser.parse_args(argv)
    known, _ = parser.parse_known_args([w for w in argv if w not in ("-h", "--help")])
    module = importlib.import_module(known._module)
    # Re-parse with the module's own arguments attached to its subparser.
    name_words = [w for w in argv if not w.startswith("-")]
    sub = parser
    for word in name_words:
        actions = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        sub = actions[0].choices[word]
    module.add_arguments(sub)
    args = parser.parse_args(argv)
    args.config_overrides = overrides
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
