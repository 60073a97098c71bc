"""Writes a fidelity report to TensorBoard (tensorboardX): summary scalars per regime and baseline,
per-turn scalars, exposure-bias summaries, and a custom-scalars layout that overlays regimes and
baselines in one chart per metric. Called with the training step, so a training run that evaluates
periodically shows how each number (and each turn's accuracy) moves as training goes on.

Tags:
  fidelity/{section}/{metric}                 section: teacher_forced, self_conditioned, closed_loop,
                                              baseline_ngram, baseline_trivial
  fidelity_nonempty/{section}/{metric}        the same on turns whose real output is not empty
  fidelity_copyable/{section}/{metric}        the same on turns whose output appeared earlier in the session
  by_turn/{section}/{metric}/turn_{t:03d}     per-turn means of BY_TURN_METRICS
  exposure_bias/{area_correct, mean_gap_correct, excess_error_fraction, survival_gap}
  exposure_bias/right_after_error/{regime}    P(turn right | previous turn wrong)
  exposure_bias/fit_{family}_aic, exposure_bias/best_fit_is_{family}  (self-conditioned survival)
  fs/{regime}/{entries_f1, delta_f1}
  verdicts/{section}/{metric}                 the verifier probes as a pass / fail classifier (VERDICT_METRICS)
"""
import math

from twjax.evaluate import metrics

SECTIONS = ("teacher_forced", "self_conditioned", "closed_loop")
SCALAR_METRICS = metrics.TURN_METRICS + ("xent",)
BY_TURN_METRICS = ("correct", "exact_norm", "edit_sim", "xent")  # per-turn tags: a few, not all
VERDICT_METRICS = ("accuracy", "balanced_accuracy", "pass_precision", "predicted_pass_rate", "real_pass_rate",
                   "pass_auc")
SUBSETS = {"nonempty": "non-empty outputs", "copyable": "copyable outputs"}  # metrics.summarize's subsets


def sections(report: dict) -> dict[str, dict]:
    found = {name: report[name] for name in SECTIONS if name in report}
    found.update({f"baseline_{name}": section for name, section in report.get("baselines", {}).items()})
    return found


def _scalar(writer, tag: str, value, step: int) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        writer.add_scalar(tag, float(value), step)


def layout(report: dict) -> dict:
    names = list(sections(report))
    charts = {metric: ["Multiline", [f"fidelity/{name}/{metric}" for name in names]] for metric in SCALAR_METRICS}
    subsets = {f"fidelity ({title})": {metric: ["Multiline", [f"fidelity_{subset}/{name}/{metric}" for name in names]]
                                       for metric in SCALAR_METRICS}
               for subset, title in SUBSETS.items()}
    by_turn = {f"{name} {metric}": ["Multiline", [rf"by_turn/{name}/{metric}/turn_\d+"]]
               for name in names for metric in BY_TURN_METRICS}
    exposure = {"gap": ["Multiline", ["exposure_bias/area_correct", "exposure_bias/mean_gap_correct",
                                      "exposure_bias/excess_error_fraction", "exposure_bias/survival_gap"]],
                "recovery": ["Multiline", [r"exposure_bias/right_after_error/.*"]],
                "fit AIC": ["Multiline", [r"exposure_bias/fit_.*_aic"]],
                "file system": ["Multiline", [r"fs/.*"]],
                "verifier verdicts": ["Multiline", [r"verdicts/.*/balanced_accuracy"]]}
    return {"fidelity": charts, **subsets, "per turn": by_turn, "exposure bias": exposure}


def write(writer, report: dict, step: int) -> None:
    """Writes `report` (fidelity.build_report's dict) at training step `step` and flushes."""
    writer.add_custom_scalars(layout(report))
    for name, section in sections(report).items():
        for metric in SCALAR_METRICS:
            _scalar(writer, f"fidelity/{name}/{metric}", section.get(metric), step)
            for subset in SUBSETS:
                _scalar(writer, f"fidelity_{subset}/{name}/{metric}", section.get(subset, {}).get(metric), step)
        for metric in VERDICT_METRICS:
            _scalar(writer, f"verdicts/{name}/{metric}", (section.get("verdicts") or {}).get(metric), step)
        for row in section.get("by_turn", []):
            for metric in BY_TURN_METRICS:
                _scalar(writer, f"by_turn/{name}/{metric}/turn_{row['turn']:03d}", row.get(metric), step)
    bias = report.get("exposure_bias")
    if bias:
        area = bias["area_between"].get("correct", {})
        _scalar(writer, "exposure_bias/area_correct", area.get("area"), step)
        _scalar(writer, "exposure_bias/mean_gap_correct", area.get("mean_gap"), step)
        _scalar(writer, "exposure_bias/excess_error_fraction", bias["excess_error_fraction"].get("correct"), step)
        _scalar(writer, "exposure_bias/survival_gap", bias.get("survival_gap"), step)
        for regime, rates in bias.get("transitions", {}).items():
            _scalar(writer, f"exposure_bias/right_after_error/{regime}", rates["after_error"], step)
        fits = report["self_conditioned"]["curves"]["fits"]
        for family, fit in fits.items():
            if family != "best":
                _scalar(writer, f"exposure_bias/fit_{family}_aic", fit["aic"], step)
                _scalar(writer, f"exposure_bias/best_fit_is_{family}", float(fits["best"] == family), step)
    for regime, scores in report.get("fs", {}).items():
        for key in ("entries_f1", "delta_f1", "spurious_change_rate"):
            _scalar(writer, f"fs/{regime}/{key}", scores.get(key), step)
    writer.flush()
