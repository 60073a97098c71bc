"""`twjax collect`: generate tasks, run them in the harness, write train / valid / test episode shards.

    OUT/config.json             the data config (a resume with a different config is refused)
    OUT/{split}-{NNNNN}.jsonl   Episode JSONL, append-only, `shard_size` episodes a shard
    OUT/failures.jsonl          tasks whose check or episode failed: counted and reported, not dropped silently
    OUT/stats.json              counts over everything on disk (so they are right after a resume)

Resuming: the plan (splits.plan) is deterministic and episode ids are (family, seed, kind), so a
rerun repairs a partial last line (episode.repair_tail), skips ids already in a shard or in
failures.jsonl, and appends the rest: nothing is lost and nothing is written twice.
"""
import argparse
import collections
import functools
import itertools
import json
import pathlib
import random
import sys
import time
import traceback

import tqdm

from twjax import configlib
from twjax.episode import Episode, EpisodeFormatError, repair_tail
from twjax.tasks import splits

FAILURES = "failures.jsonl"
STATS = "stats.json"


def resolve_families(config) -> list[str]:
    from twjax.tasks import registry
    held = set(config.held_out_families)
    names = list(config.families) or sorted(registry.FAMILIES)
    unknown = sorted((set(names) | held) - set(registry.FAMILIES))
    if unknown:
        raise SystemExit(f"unknown task families {unknown}; known: {sorted(registry.FAMILIES)}")
    return [n for n in names if n not in held]


def make_plan(config) -> tuple[list[splits.Job], splits.PlanReport]:
    from twjax.tasks import registry
    return splits.plan(config, registry.generate, resolve_families(config), splits.imported_tasks(config))


class CountingSession:
    """The session, counting every command the harness runs for a job: setup, checks, verifier, turns,
    error-injection probes, snapshots and resets."""

    def __init__(self, session):
        self._session, self.commands = session, 0

    def run(self, *args, **kwargs):
        self.commands += 1
        return self._session.run(*args, **kwargs)

    def run_script(self, *args, **kwargs):
        self.commands += 1
        return self._session.run_script(*args, **kwargs)

    def snapshot(self, *args, **kwargs):
        self.commands += 1
        return self._session.snapshot(*args, **kwargs)

    def reset(self, *args, **kwargs):
        self.commands += 1
        return self._session.reset(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._session, name)


def observation_command(config) -> str | bool:
    """The command a collection opens its transcripts with (config.observe_setup; its layout,
    config.observe_layout, one of episodes.OBSERVE_COMMANDS), or False."""
    from twjax.tasks import episodes
    return episodes.observation(bool(config.get("observe_setup", False)), config.get("observe_layout", "contents_first"))


def run_job(session, job: splits.Job, exploration_steps: int, observe: bool | str = False) -> dict:
    """In a worker with a fresh session: check the task (check_task: the no-op must fail the verifier,
    the expert solution must pass it), then record one episode of the job's kind. An expert job's
    episode is the check's own; for other kinds the sandbox is reset (Session.reset: processes
    killed, writable directories emptied) so the episode starts from the untouched state.
    `observe`: every episode opens with the observation of the state after setup (episodes.prepare;
    a string: the observation command).
    Returns {"episode": json} or {"failure": json}, and "commands": how many the harness ran."""
    from twjax.harness.shell import SandboxError
    from twjax.tasks import episodes
    session = CountingSession(session)
    where = {"id": job.episode_id, "split": job.split, "family": job.family, "seed": job.seed, "kind": job.kind}
    try:
        check = episodes.check_task(session, job.task, observe)
        if not check.ok:
            return {"failure": {**where, "stage": "check", "error": check.reason}, "commands": session.commands}
        rng = random.Random(f"{job.seed}/{job.kind}")
        if job.kind == "expert":
            episode = check.episode
        else:
            session.reset()
            if job.kind == "injected":
                episode = episodes.injected_episode(session, job.task, rng, observe=observe)
            else:
                episode = episodes.exploration_episode(session, job.task, rng, exploration_steps, observe)
    except Exception as error:  # a broken task or sandbox is one counted failure, not the end of the run
        stage = "sandbox" if isinstance(error, SandboxError) else "episode"
        return {"failure": {**where, "stage": stage, "error": f"{type(error).__name__}: {error}",
                            "traceback": traceback.format_exc(limit=4)}, "commands": session.commands}
    episode.id = job.episode_id
    episode.extra.update(split=job.split, heldout=job.heldout, seed=job.seed, content_hash=job.content_hash,
                         kind=job.kind, family=job.family)
    return {"episode": episode.to_json(), "commands": session.commands}


class ShardWriter:
    """Appends episodes of one split to SPLIT-NNNNN.jsonl, starting a new shard every shard_size."""

    def __init__(self, out: pathlib.Path, split: str, shard_size: int):
        self.out, self.split, self.shard_size = out, split, shard_size
        existing = sorted(out.glob(f"{split}-*.jsonl"))
        self.index = len(existing) - 1 if existing else 0
        self.count = count_lines(existing[-1]) if existing else 0
        self.handle = None

    def write(self, line: str) -> None:
        if self.handle is None or self.count >= self.shard_size:
            if self.handle is not None:
                self.handle.close()
                self.index, self.count = self.index + 1, 0
            self.handle = open(self.out / f"{self.split}-{self.index:05d}.jsonl", "a", encoding="utf-8")
        self.handle.write(line + "\n")
        self.handle.flush()
        self.count += 1

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def count_lines(path: pathlib.Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def shard_paths(out: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for split in splits.SPLITS for p in out.glob(f"{split}-*.jsonl"))


def done_ids(out: pathlib.Path) -> set[str]:
    """Ids already written (episodes, or failures of the task itself), after cutting any partial
    last line. Sandbox failures (the machine, not the task) are tried again."""
    ids = set()
    for path in shard_paths(out) + [out / FAILURES]:
        if path.exists():
            repair_tail(path)
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                        if record.get("stage") != "sandbox":
                            ids.add(record["id"])
                    except (ValueError, KeyError, AttributeError) as error:
                        raise EpisodeFormatError(f"{path}:{number}: cannot resume past this line ({error!r})") from None
    return ids


def episode_size(episode: Episode) -> tuple[int, int]:
    """(whitespace tokens, UTF-8 bytes) of the task text, commands and outputs."""
    texts = [episode.task] + [t.command for t in episode.turns] + [t.output for t in episode.turns]
    return (sum(len(t.split()) for t in texts),
            sum(len(t.encode("utf-8", errors="surrogateescape")) for t in texts))


def compute_stats(out: pathlib.Path) -> dict:
    from twjax.episode import read_jsonl
    per_split, hashes, written = {}, collections.defaultdict(set), set()
    for split in splits.SPLITS:
        s = collections.Counter()
        families, kinds, heldout, passed_kinds = (collections.Counter() for _ in range(4))
        for path in sorted(out.glob(f"{split}-*.jsonl")):
            for episode in read_jsonl(path):
                tokens, size = episode_size(episode)
                labels = collections.Counter(t.label for t in episode.turns)
                s.update(episodes=1, turns=len(episode.turns), tokens=tokens, bytes=size,
                         error_turns=labels["error"], recovery_turns=labels["recovery"],
                         verify_turns=labels["verify"],
                         verify_passes=sum(t.label == "verify" and t.exit_code == 0 for t in episode.turns),
                         passed=bool(episode.extra.get("passed")))
                families[episode.extra.get("family", "?")] += 1
                kinds[episode.extra.get("kind", "?")] += 1
                passed_kinds[episode.extra.get("kind", "?")] += bool(episode.extra.get("passed"))
                heldout[episode.extra.get("heldout", "?")] += 1
                hashes[split].add(episode.extra.get("content_hash"))
                written.add(episode.id)
        turns = max(1, s["turns"])
        per_split[split] = {
            "episodes": s["episodes"], "turns": s["turns"], "tokens": s["tokens"], "bytes": s["bytes"],
            "error_turn_fraction": round(s["error_turns"] / turns, 4),
            "recovery_turn_fraction": round(s["recovery_turns"] / turns, 4),
            # the verdicts the learned terminal learns its reward from: how many, and how many pass
            "verify_turns": s["verify_turns"],
            "verify_pass_fraction": round(s["verify_passes"] / max(1, s["verify_turns"]), 4),
            "verified_fraction": round(s["passed"] / max(1, s["episodes"]), 4),
            # exploration episodes are not meant to solve the task; expert and injected ones are
            "verified_fraction_by_kind": {k: round(passed_kinds[k] / n, 4) for k, n in sorted(kinds.items())},
            "families": dict(sorted(families.items())), "kinds": dict(sorted(kinds.items())),
            "heldout": dict(sorted(heldout.items())),
        }
    failed = {}  # id -> last failure; a sandbox failure retried with success is not a failure
    if (out / FAILURES).exists():
        with open(out / FAILURES, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    failed[record["id"]] = record
    failures = collections.Counter(f"{r['stage']}/{r['family']}" for i, r in failed.items() if i not in written)
    overlap = {f"{a}&{b}": len(hashes[a] & hashes[b]) for a, b in (("train", "valid"), ("train", "test"), ("valid", "test"))}
    totals = {k: sum(v[k] for v in per_split.values()) for k in ("episodes", "turns", "tokens", "bytes")}
    return {"tokens_are": "whitespace-separated words of task text, commands and outputs (bytes: their UTF-8 size)",
            "total": totals, "splits": per_split, "failures": dict(sorted(failures.items())),
            "failed_tasks": sum(failures.values()), "split_overlap_tasks": overlap}


def collect(config, out: str | pathlib.Path, limit: int | None = None, progress: bool = True) -> dict:
    """Runs (the rest of) the collection into `out`; returns stats.json's content plus this run's rates."""
    from twjax.harness.pool import Pool
    from twjax.tasks import registry
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    config_json = json.loads(config.to_json())
    if config_path.exists() and json.loads(config_path.read_text()) != config_json:
        raise SystemExit(f"{out} holds a collection made with another config ({config_path}); use a new --out")
    config_path.write_text(json.dumps(config_json, indent=2, sort_keys=True))
    families, imported = resolve_families(config), splits.imported_tasks(config)
    report = splits.PlanReport()
    done = done_ids(out)
    todo = (job for job in splits.plan_stream(config, registry.generate, families, report, imported)
            if job.episode_id not in done)
    total = max(0, splits.planned_count(config, families, imported) - len(done))
    if limit is not None:
        todo, total = itertools.islice(todo, limit), min(total, limit)
    writers = {split: ShardWriter(out, split, int(config.shard_size)) for split in splits.SPLITS}
    started, new_episodes, new_turns, new_failures, commands = time.time(), 0, 0, 0, 0
    bar = tqdm.tqdm(total=total, desc="collect", unit="ep", disable=not progress, file=sys.stderr)
    with Pool(backend=config.backend, workers=int(config.workers)) as pool, \
            open(out / FAILURES, "a", encoding="utf-8") as failures:
        backend = pool.backend
        work = functools.partial(run_job, exploration_steps=int(config.exploration_steps),
                                 observe=observation_command(config))
        try:
            for result in pool.imap_unordered(work, todo):
                commands += result["commands"]
                if "episode" in result:
                    record = result["episode"]
                    writers[record["split"]].write(json.dumps(record, ensure_ascii=True, separators=(",", ":")))
                    new_episodes += 1
                    new_turns += len(record["turns"])
                else:
                    failures.write(json.dumps(result["failure"], ensure_ascii=True) + "\n")
                    failures.flush()
                    new_failures += 1
                    bar.write(f"task failed ({result['failure']['stage']}): {result['failure']['id']}: "
                              f"{result['failure']['error'][:200]}")
                bar.update(1)
        finally:
            bar.close()
            for writer in writers.values():
                writer.close()
    seconds = time.time() - started
    stats = compute_stats(out)
    planned = splits.planned_count(config, families, imported)
    stats["plan"] = {"planned_jobs": planned, "complete": limit is None,  # else the counts below are partial
                     "candidates": report.candidates, "duplicates_skipped": report.duplicates,
                     "shortfall": report.shortfall, "heldout_words": report.heldout_words}
    stats["run"] = {"new_episodes": new_episodes, "new_failures": new_failures, "new_turns": new_turns,
                    "seconds": round(seconds, 3), "episodes_per_s": round(new_episodes / max(seconds, 1e-9), 3),
                    "turns_per_s": round(new_turns / max(seconds, 1e-9), 3), "harness_commands": commands,
                    "commands_per_s": round(commands / max(seconds, 1e-9), 3),
                    "backend": backend, "workers": int(config.workers),
                    "remaining": max(0, planned - stats["total"]["episodes"] - stats["failed_tasks"]
                                     - sum(report.shortfall.values()))}
    (out / STATS).write_text(json.dumps(stats, indent=2, sort_keys=True))
    return stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/data/tiny.py", help="data config (configs/data/*.py)")
    parser.add_argument("--out", required=True, help="output directory (resumable: rerun to continue)")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many new jobs (resume later)")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    config = configlib.load(args.config, args.config_overrides)
    stats = collect(config, args.out, limit=args.limit, progress=not args.no_progress)
    print(json.dumps({"total": stats["total"], "failed_tasks": stats["failed_tasks"],
                      "shortfall": stats["plan"]["shortfall"], "run": stats["run"]}, sort_keys=True))
    return 0
