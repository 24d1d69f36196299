"""The fidelity report's figures: the findings (agreement by ensemble size, augmentation and data,
initial weight, against accuracy) and every stage's train-loss curve."""

from __future__ import annotations

import numpy as np

from experiments.configs import fidelity as table
from experiments.reports import report_files
from experiments.reports.seed_stats import mean_std


def _stats(runs, column):
  return mean_std([run[column] for run in runs])


def _errorbars(axis, x, groups):
  for column, label, style in (("agreement", "test", "o-"), ("train_agreement", "train", "s--")):
    stats = [_stats(runs, column) for runs in groups]
    axis.errorbar(
        x, [m for m, _ in stats], yerr=[e for _, e in stats], fmt=style, capsize=3, label=label
    )
  axis.set_ylabel("top-1 agreement (%)")


def findings_figure(path: str, variant: str, data: dict) -> None:
  plt = report_files.pyplot()
  s = table.settings(variant)
  rows = data["rows"]
  fig, axes = plt.subplots(2, 2, figsize=(10, 7))
  pair = _stats(data["pairs"], "agreement")[0]
  sizes = list(s["ensemble_sizes"])
  axis = axes[0, 0]
  _errorbars(axis, sizes, [rows[f"m{m}"] for m in sizes])
  axis.set(xlabel="teachers in the ensemble (m)", title="Ensemble size", xticks=sizes)
  axis = axes[0, 1]
  policies = ["m1", "mixup", "noise", "data"]
  _errorbars(axis, np.arange(len(policies)), [rows[n] for n in policies])
  axis.set_xticks(np.arange(len(policies)), ["baseline", "mixup", "noise", "data"])
  axis.set(title="Augmentation and distillation data (one teacher)")
  axis = axes[1, 0]
  weights = [0.0] + list(s["interpolation"])
  _errorbars(axis, weights, [rows["m1"]] + [rows[table.interpolation_row(w)] for w in weights[1:]])
  axis.set(xlabel="λ (start at λ·θ_teacher + (1 − λ)·θ_random)", title="Initialisation")
  for axis in (axes[0, 0], axes[0, 1], axes[1, 0]):
    axis.axhline(pair, color="grey", lw=0.8, ls=":", label="two teachers (test)")
    axis.legend(fontsize=7)
  axis = axes[1, 1]
  for row, runs in rows.items():
    agreement, accuracy = _stats(runs, "agreement")[0], _stats(runs, "accuracy")[0]
    axis.scatter(agreement, accuracy)
    axis.annotate(row, (agreement, accuracy), fontsize=7)
  axis.set(
      xlabel="test agreement (%)", ylabel="student test accuracy (%)", title="Fidelity vs accuracy"
  )
  report_files.save_figure(fig, path, dpi=110)


def _mean_curve(runs):
  """Steps and the mean loss over seeds at the steps every run logged."""
  curves = [dict(run["curve"]) for run in runs if run.get("curve")]
  if not curves:
    return None, None
  steps = sorted(set.intersection(*(set(c) for c in curves)))
  return np.asarray(steps), np.asarray([np.mean([c[step] for c in curves]) for step in steps])


def _smooth(losses, width=5):
  if len(losses) < width:
    return losses
  return np.convolve(losses, np.ones(width) / width, mode="valid")


def curves_figure(path: str, variant: str, data: dict) -> None:
  plt = report_files.pyplot()
  s = table.settings(variant)
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  per_epoch = {
      "teacher": s["train"][1] / s["teacher_batch"],
      "student": s["train"][1] / s["student_batch"],
  }
  for run in data["teachers"]:
    steps, losses = _mean_curve([run])
    if steps is not None:
      smooth = _smooth(losses)
      left.plot(
          steps[len(steps) - len(smooth) :] / per_epoch["teacher"], smooth, label=run["stage"]
      )
  left.set(xlabel="epoch", ylabel="train CE loss", title="Teachers", yscale="log")
  left.legend(fontsize=7)
  for row, runs in data["rows"].items():
    steps, losses = _mean_curve(runs)
    if steps is not None:
      smooth = _smooth(losses)
      right.plot(steps[len(steps) - len(smooth) :] / per_epoch["student"], smooth, label=row)
  right.set(
      xlabel="epoch of the teachers' train set",
      ylabel="train KD loss τ²·KL (mean over seeds)",
      title="Students",
      yscale="log",
  )
  right.legend(fontsize=7, ncol=2)
  report_files.save_figure(fig, path, dpi=110)
