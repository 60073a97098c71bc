"""An experiment's results table: its finished trials grouped by their overrides less the seed.

Written after every local or TPU VM run, next to trials.jsonl:
    EXPROOT/EXPERIMENT/results.json   one entry per group: overrides, seeds, and per metric the
                                      per-seed values, their mean and a 95% confidence interval
    EXPROOT/EXPERIMENT/results.md     the same as a markdown table
    EXPROOT/EXPERIMENT/results.png    the mean and interval of each metric, one panel each
Columns: the experiment's summary_metrics, else every numeric final metric the finished trials share.
The interval is Student's t over the seeds (mean ± t(0.975, n-1)·s/√n): it says how much the
outcome moves with the seed, which is what separates one regime from another; with one seed there
is none. Trials not yet finished are counted, never averaged in.
"""
import json
import math
import os
import pathlib

import numpy as np
from scipy import stats

from twjax.launch import hparams

JSON, MARKDOWN, PLOT = "results.json", "results.md", "results.png"


def is_seed(key: str) -> bool:
    return "seed" in key.rsplit(".", 1)[-1]


def mean_ci(values: list[float], level: float = 0.95) -> dict:
    """{"mean", "low", "high", "n"}: Student's t interval of the mean (low = high = None for n < 2)."""
    array = np.asarray(values, np.float64)
    out = {"mean": float(array.mean()), "low": None, "high": None, "n": int(array.size)}
    if array.size >= 2:
        half = stats.t.ppf(0.5 + level / 2, array.size - 1) * array.std(ddof=1) / math.sqrt(array.size)
        out.update(low=float(out["mean"] - half), high=float(out["mean"] + half))
    return out


def group_key(overrides: dict) -> str:
    return json.dumps({k: v for k, v in overrides.items() if not is_seed(k)}, sort_keys=True)


def varying_keys(records: list[dict]) -> list[str]:
    """The non-seed override keys whose value is not the same in every trial (what the labels show),
    in the order the grid first names them."""
    keys = list(dict.fromkeys(k for r in records for k in r["overrides"] if not is_seed(k)))
    missing = object()
    return [k for k in keys if len({json.dumps(r["overrides"].get(k, missing), default=str) for r in records}) > 1]


def label(overrides: dict, keys: list[str]) -> str:
    shown = [f"{k.rsplit('.', 1)[-1]}={overrides[k]}" for k in keys if k in overrides]
    return ", ".join(shown) or "all"


def metric_columns(records: list[dict], summary_metrics: tuple[str, ...]) -> list[str]:
    if summary_metrics:
        return list(summary_metrics)
    finished = [hparams.numeric(r.get("metrics", {})) for r in records if r["status"] == "ok"]
    return sorted(set.intersection(*(set(m) for m in finished))) if finished else []


def table(records: list[dict], summary_metrics: tuple[str, ...] = ()) -> dict:
    """{"metrics": [...], "groups": [{"label", "overrides", "trials", "finished", "seeds", METRIC: {...}}]}
    in the grid's order."""
    columns = metric_columns(records, summary_metrics)
    keys = varying_keys(records)
    groups = {}
    for record in records:
        group = groups.setdefault(group_key(record["overrides"]), {
            "label": label(record["overrides"], keys),
            "overrides": {k: v for k, v in record["overrides"].items() if not is_seed(k)},
            "trials": 0, "finished": 0, "seeds": [], "values": {c: [] for c in columns}})
        group["trials"] += 1
        if record["status"] != "ok":
            continue
        group["finished"] += 1
        group["seeds"].append({k: v for k, v in record["overrides"].items() if is_seed(k)})
        metrics = hparams.numeric(record.get("metrics", {}))
        for column in columns:
            if column in metrics:
                group["values"][column].append(metrics[column])
    rows = []
    for group in groups.values():
        values = group.pop("values")
        for column in columns:
            group[column] = {"values": values[column], **(mean_ci(values[column]) if values[column] else {})}
        rows.append(group)
    return {"metrics": columns, "groups": rows}


def cell(summary: dict) -> str:
    if "mean" not in summary:
        return "—"
    if summary["low"] is None:
        return f"{summary['mean']:.3f}"
    return f"{summary['mean']:.3f} [{summary['low']:.3f}, {summary['high']:.3f}]"


def markdown(result: dict) -> str:
    columns = result["metrics"]
    lines = ["| group | finished | " + " | ".join(columns) + " |", "|" + " --- |" * (len(columns) + 2)]
    for group in result["groups"]:
        lines.append(f"| {group['label']} | {group['finished']}/{group['trials']} | "
                     + " | ".join(cell(group[c]) for c in columns) + " |")
    lines.append("")
    lines.append("Mean over seeds, [95% CI] Student's t over the seeds; —: no value (no finished trial, or the "
                 "metric does not apply).")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    columns, groups = result["metrics"], result["groups"]
    figure, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 0.45 * len(groups) + 1.5),
                                squeeze=False, sharey=True)
    y = np.arange(len(groups))
    for axis, column in zip(axes[0], columns):
        means = [g[column].get("mean", np.nan) for g in groups]
        errors = np.array([[m - g[column]["low"], g[column]["high"] - m] if g[column].get("low") is not None
                           else [0.0, 0.0] for m, g in zip(means, groups)]).T
        axis.barh(y, means, xerr=errors, capsize=3, color="tab:blue", alpha=0.8)
        for index, group in enumerate(groups):
            axis.plot(group[column]["values"], [index] * len(group[column]["values"]), "k.", markersize=4)
        axis.set_title(column, fontsize=8)
        axis.invert_yaxis()
    axes[0][0].set_yticks(y, [g["label"] for g in groups], fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    """A reader (or a crash) never sees the file half written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write(records: list[dict], records_dir: pathlib.Path, summary_metrics: tuple[str, ...] = ()) -> dict:
    """Writes results.{json,md,png} into records_dir (the plot only once a trial has finished)."""
    result = table(records, summary_metrics)
    write_text_atomic(records_dir / JSON, json.dumps(result, indent=1) + "\n")
    write_text_atomic(records_dir / MARKDOWN, markdown(result))
    if result["metrics"] and any(g["finished"] for g in result["groups"]):
        plot(result, records_dir / PLOT)
    return result
