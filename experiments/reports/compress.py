"""The CompRess table (PAPERS.md §5): Markdown, CSV and plot from a run of configs/compress.py.

Cells are test accuracy (%) of the linear probe, 1-NN and cluster alignment on each task, mean ±
sample std over seeds; the teacher row is the pretrained encoder itself, evaluated as it comes by
the 0-step stage `teacher` (one network: no seed spread). Whether the paper's claims hold is
computed from the numbers here, never typed in: "A beats B" needs the difference of means to
exceed twice its standard error over seeds.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from experiments.reports.seed_stats import compare, format_mean_std, mean_std
from experiments.configs import compress as table
from experiments.reports.config_doc import description, variant_text

EVALS = (("linear", "linear"), ("nn", "NN"), ("ca", "CA"))
LABELS = {
    "teacher": "Teacher (frozen, pretrained)",
    "supervised": "Student, supervised from scratch",
    "reg": "Reg",
    "reg_bn": "Reg-BN",
    "cc": "CC",
    "crd": "CRD (InfoNCE, queue)",
    "compress_1q": "CompRess-1q",
    "compress_2q": "CompRess-2q",
    "compress_no_momentum": "CompRess w/o momentum",
}
COMPRESS_ROWS = ("compress_1q", "compress_2q", "compress_no_momentum")
BASELINES = ("reg", "cc", "crd")
# Published ImageNet numbers (linear / NN / CA), PAPERS.md §5, for comparison only.
PAPER = {
    "MoCo-v2 ResNet-50 teacher": (70.8, 57.3, 34.2),
    "CompRess-1q → ResNet-18": (62.6, 53.5, 33.0),
    "CompRess-1q → AlexNet": (57.5, 48.0, 27.0),
    "CRD → AlexNet": (54.4, 36.9, 14.1),
}


def row_stages(variant: str, row: str, task: str) -> list[str]:
  seeds = table.settings(variant)["seeds"]
  if row == "teacher":
    return ["teacher"]
  if row == "supervised":
    return [table.stage_name("supervised", seed, task) for seed in seeds]
  return [table.stage_name(row, seed) for seed in seeds]


def cells(variant: str, results: dict) -> dict:
  """{task: {row: {eval: [accuracy % per seed]}}}."""
  rows = ("teacher", "supervised") + tuple(table.DISTILL_ROWS)
  out = {}
  for task in table.settings(variant)["tasks"]:
    out[task] = {}
    for row in rows:
      stages = row_stages(variant, row, task)
      out[task][row] = {
          key: [100 * results[st]["evals"][f"{task}_{key}"]["accuracy"] for st in stages]
          for key, _ in EVALS
      }
  return out


def ablations(variant: str, results: dict) -> dict:
  """{"tau": {value: {task_eval: %}}, "queue": {...}}, the main row's seed 0 included."""
  s = table.settings(variant)
  main = table.stage_name(table.ABLATION_ROW, 0)
  grids = {
      "tau": sorted({0.04, *s["temperatures"]}),
      "queue": sorted({s["queue"], *s["queues"]}),
  }
  main_value = {"tau": 0.04, "queue": s["queue"]}
  out = {}
  for key, values in grids.items():
    out[key] = {}
    for value in values:
      stage = main if value == main_value[key] else table.ablation_stage(key, value)
      out[key][value] = {
          f"{task}_{e}": 100 * results[stage]["evals"][f"{task}_{e}"]["accuracy"]
          for task in s["tasks"]
          for e, _ in EVALS
      }
  return out


def claims(variant: str, table_cells: dict, ablation: dict) -> list[str]:
  lines = []
  # 1. Best CompRess variant per task and evaluation vs Reg / CC / CRD, on NN and CA.
  wins, total = 0, 0
  for task, rows in table_cells.items():
    for key in ("nn", "ca"):
      best = max(COMPRESS_ROWS, key=lambda r: np.mean(rows[r][key]))
      parts = []
      for base in BASELINES:
        gap, se, outcome = compare(rows[best][key], rows[base][key])
        total += 1
        wins += outcome == "beats"
        verdict = {"beats": "beats", "loses": "loses to", "within": "ties with"}[outcome]
        parts.append(f"{verdict} {LABELS[base]} ({gap:+.1f} ± {se:.1f})")
      lines.append(f"- {task} {key.upper()}: {LABELS[best]} " + ", ".join(parts) + ".")
  lines.append(
      f'- Claim "CompRess beats Reg, CC and CRD on NN and CA": '
      + ("holds" if wins == total else "does not hold")
      + f" here ({wins} of {total} comparisons won beyond twice the standard error)."
  )
  # 2. Larger banks help: NN accuracy rising with K (averaged over the tasks).
  queue = ablation["queue"]
  nn = {k: np.mean([v for name, v in r.items() if name.endswith("_nn")]) for k, r in queue.items()}
  sizes = sorted(nn)
  rising = all(nn[b] >= nn[a] for a, b in zip(sizes, sizes[1:]))
  if len(sizes) < 2:  # a variant without queue ablations
    verdict = "not tested (one K)."
  elif rising and nn[sizes[-1]] > nn[sizes[0]]:
    verdict = "holds (NN does not fall as K grows)."
  else:
    verdict = "does not hold."
  lines.append(
      f'- Claim "larger banks help" (NN, mean over tasks, {table.ABLATION_ROW}, seed 0: '
      + ", ".join(f"K={k}: {nn[k]:.1f}" for k in sizes)
      + "): "
      + verdict
  )
  # 3. τ = 0.04 best: the mean over every task and evaluation.
  tau = {t: np.mean(list(r.values())) for t, r in ablation["tau"].items()}
  best_tau = max(tau, key=tau.get)
  lines.append(
      '- Claim "τ = 0.04 is best" (mean of all six accuracies, seed 0: '
      + ", ".join(f"τ={t:g}: {v:.1f}" for t, v in sorted(tau.items()))
      + "): "
      + (
          "not tested (one τ)."  # a variant without τ ablations (smoke)
          if len(tau) < 2
          else "holds."
          if best_tau == 0.04
          else f"does not hold (τ = {best_tau:g} is best here)."
      )
  )
  lines.append(
      "- Ablations are single runs (seed 0): differences smaller than the seed spread of the "
      "main rows are not evidence either way."
  )
  return lines


def write_csv(path: str, variant: str, results: dict) -> None:
  s = table.settings(variant)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["stage", "task", "evaluation", "test_accuracy", "detail"])
    for stage in sorted(results):
      for task in s["tasks"]:
        for key, _ in EVALS:
          r = results[stage].get("evals", {}).get(f"{task}_{key}")
          if r is None:
            continue
          detail = {"linear": "regularization", "nn": "database_size", "ca": "fit_accuracy"}[key]
          writer.writerow([stage, task, key, f"{r['accuracy']:.4f}", r.get(detail, "")])


def write_plot(path: str, table_cells: dict, ablation: dict) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  tasks = list(table_cells)
  fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(5 * (len(tasks) + 1), 4))
  for ax, task in zip(axes, tasks):
    rows = list(table_cells[task])
    x = np.arange(len(rows))
    for offset, (key, label) in enumerate(EVALS):
      stats = [mean_std(table_cells[task][r][key]) for r in rows]
      ax.bar(
          x + 0.27 * (offset - 1),
          [m for m, _ in stats],
          0.27,
          yerr=[sd for _, sd in stats],
          label=label,
          capsize=2,
      )
    ax.set_xticks(x, [LABELS[r].split(" (")[0].replace("Student, ", "") for r in rows])
    ax.tick_params(axis="x", rotation=60, labelsize=7)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(task)
    ax.legend(fontsize=7)
  ax = axes[-1]
  for task in tasks:
    queue = ablation["queue"]
    ax.plot(list(queue), [queue[k][f"{task}_nn"] for k in queue], marker="o", label=f"{task} NN")
  ax.set_xscale("log", base=2)
  ax.set_xlabel(f"queue size K ({table.ABLATION_ROW}, seed 0)")
  ax.set_ylabel("test accuracy (%)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_report(config, results: dict, *, out_dir: str, name: str, command: str, variant: str):
  del config
  os.makedirs(out_dir, exist_ok=True)
  s = table.settings(variant)
  table_cells = cells(variant, results)
  ablation = ablations(variant, results)
  doc = description(table.__doc__)
  lines = [f"# CompRess table, variant `{variant}`", "", f"Command: `{command}`", "", doc, ""]
  lines += [f"Variant `{variant}`: " + variant_text(table.__doc__, variant), ""]
  seeds = ", ".join(map(str, s["seeds"]))
  header = [f"{task} {label}" for task in table_cells for _, label in EVALS]
  lines += [
      f"Test accuracy (%), mean ± std over seeds {seeds} (the teacher: the pretrained network, "
      "0 training steps).",
      "",
      "| row | " + " | ".join(header) + " |",
      "|---|" + "---|" * len(header),
  ]
  for row in next(iter(table_cells.values())):
    values = [
        format_mean_std(table_cells[task][row][key], digits=1)
        for task in table_cells
        for key, _ in EVALS
    ]
    lines.append(f"| {LABELS[row]} | " + " | ".join(values) + " |")
  for key, title in (("tau", "τ"), ("queue", "queue size K")):
    lines += ["", f"Ablation of {title} ({LABELS[table.ABLATION_ROW]}, seed 0):", ""]
    lines += ["| " + title + " | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for value, r in ablation[key].items():
      lines.append(
          f"| {value:g} | "
          + " | ".join(f"{r[f'{t}_{e}']:.1f}" for t in table_cells for e, _ in EVALS)
          + " |"
      )
  lines += ["", "## Claims", ""] + claims(variant, table_cells, ablation)
  lines += [
      "",
      "## Published ImageNet numbers (linear / NN / CA %), for comparison only",
      "",
      "| network | linear | NN | CA |",
      "|---|---|---|---|",
  ]
  lines += [f"| {k} | {a} | {b} | {c} |" for k, (a, b, c) in PAPER.items()]
  paths = {ext: os.path.join(out_dir, f"{name}.{ext}") for ext in ("md", "csv", "png")}
  with open(paths["md"], "w") as f:
    f.write("\n".join(lines) + "\n")
  write_csv(paths["csv"], variant, results)
  write_plot(paths["png"], table_cells, ablation)
  return paths
