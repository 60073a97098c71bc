"""The experiment results table: trials grouped over seeds, Student's t intervals, md / json / png."""
import json

import pytest

from twjax.launch import results


def record(regime, seed, value, status="ok", **extra):
    return {"name": f"{regime}-{seed}", "status": status,
            "overrides": {"agent.regime": regime, "train.seed": seed, "data.train": "d/n24", **extra},
            "metrics": {"eval": {"real": {"pass@1": value}}, "steps": 60} if status == "ok" else {}}


def test_groups_over_seeds_with_t_intervals_and_counts_unfinished(tmp_path):
    records = [record("A", 0, 0.2), record("A", 1, 0.4), record("A", 2, 0.6),
               record("B", 0, 0.5, lambda_obs=0.5), record("B", 1, 0.0, status="failed", lambda_obs=0.5),
               record("C", 0, 0.0, status="pending")]
    result = results.write(records, tmp_path, ("eval/real/pass@1",))
    a, b, c = result["groups"]
    assert [g["label"] for g in result["groups"]] == ["regime=A", "regime=B, lambda_obs=0.5", "regime=C"]
    # mean 0.4, s = 0.2, t(0.975, 2) = 4.3027: half width 4.3027 * 0.2 / sqrt(3) = 0.4968
    assert a["eval/real/pass@1"]["mean"] == pytest.approx(0.4)
    assert a["eval/real/pass@1"]["low"] == pytest.approx(0.4 - 0.49683, abs=1e-4)
    assert a["eval/real/pass@1"]["high"] == pytest.approx(0.4 + 0.49683, abs=1e-4)
    assert (a["trials"], a["finished"], a["seeds"]) == (3, 3, [{"train.seed": 0}, {"train.seed": 1}, {"train.seed": 2}])
    assert (b["finished"], b["trials"], b["eval/real/pass@1"]) == (1, 2, {"values": [0.5], "mean": 0.5, "low": None,
                                                                           "high": None, "n": 1})
    assert c["finished"] == 0 and c["eval/real/pass@1"] == {"values": []}
    md = (tmp_path / "results.md").read_text().splitlines()
    assert md[0] == "| group | finished | eval/real/pass@1 |"
    assert md[2:5] == ["| regime=A | 3/3 | 0.400 [-0.097, 0.897] |", "| regime=B, lambda_obs=0.5 | 1/2 | 0.500 |",
                       "| regime=C | 0/1 | — |"]
    assert json.loads((tmp_path / "results.json").read_text()) == result
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_summary_metrics_the_shared_numeric_metrics_are_the_columns(tmp_path):
    result = results.table([record("A", 0, 0.2), record("B", 0, 0.3)])
    assert result["metrics"] == ["eval/real/pass@1", "steps"]
    assert results.table([record("A", 0, 0.2, status="failed")])["metrics"] == []
