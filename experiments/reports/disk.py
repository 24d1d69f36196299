"""The DiSK table (PAPERS.md §4): Markdown + CSV + plot from a finished run of configs/disk.py.

Seed 0 of a tuned method is its candidate with the best validation accuracy (the rule
`kd_jax.train.choices` applied to the other seeds); the other seeds ran with that choice. Cells are
test accuracy, mean ± sample std over seeds. Whether the paper's claims hold is computed from
the numbers, never typed in.
"""

from __future__ import annotations

import csv
import os

import jax.numpy as jnp
import numpy as np

from experiments.reports.seed_stats import compare, format_mean_std, mean_std
from experiments.configs import disk as table
from kd_jax.models import get_model
from kd_jax.models.summary import dense_macs

LABELS = {"ce": "CE", "kd": "KD", "fitnets": "FitNets", "at": "AT", "disk": "DiSK"}
# Published CIFAR-100 top-1 (CE / KD / DiSK), PAPERS.md §4, for comparison only.
PAPER = {
    "ResNet10_l → ResNet10_s": (52.16, 54.92, 58.14),
    "ResNet10_l → ResNet10_m": (65.24, 66.96, 70.03),
    "ResNet18 → ResNet10_s": (52.16, 55.76, 58.11),
    "ResNet18 → ResNet10_m": (65.24, 68.09, 69.86),
}
INPUT_SHAPES = {
    "fashion_mnist": (1, 28, 28, 1),
    "mnist5k": (1, 28, 28, 1),
    "cifar100": (1, 32, 32, 3),
}


def chosen_candidate(variant: str, student: str, method: str, results: dict) -> tuple[str, object]:
  """(stage, value) of the candidate with the best validation accuracy (ties: the first)."""
  _, values = table.grid(variant, method)
  stages = [table.candidate_stage(student, method, v) for v in values]
  scores = [results[stage]["evals"]["validation"]["accuracy"] for stage in stages]
  best = int(np.argmax(scores))
  return stages[best], values[best]


def method_stages(variant: str, student: str, method: str, results: dict) -> tuple[list, object]:
  """The stages of one cell (one per seed) and the tuned value (None for CE)."""
  seeds = table.settings(variant)["seeds"]
  if method == "ce":
    return [table.seed_stage(student, method, seed) for seed in seeds], None
  first, value = chosen_candidate(variant, student, method, results)
  return [first] + [table.seed_stage(student, method, seed) for seed in seeds[1:]], value


def student_macs(variant: str, student: str) -> float:
  s = table.settings(variant)
  model = get_model(student, num_classes=s["num_classes"])
  return dense_macs(model, jnp.zeros(INPUT_SHAPES[s["dataset"]]))


def cells(variant: str, results: dict) -> dict:
  """{student: {method: {"test": [...], "validation": [...], "value": tuned, "stages": [...]}}}."""
  out = {}
  for student in table.settings(variant)["students"]:
    out[student] = {}
    for method in table.METHODS:
      stages, value = method_stages(variant, student, method, results)
      out[student][method] = {
          "stages": stages,
          "value": value,
          "test": [100 * results[stage]["accuracy"] for stage in stages],
          "validation": [
              100 * results[stage]["evals"]["validation"]["accuracy"] for stage in stages
          ],
      }
  return out


def claims(variant: str, table_cells: dict) -> list[str]:
  """Whether DiSK beats KD per student (beyond the seed spread), and whether the gain grows as
  capacity shrinks (students are listed from largest to smallest)."""
  lines, gains = [], []
  for student, row in table_cells.items():
    gain, spread, outcome = compare(row["disk"]["test"], row["kd"]["test"])
    gains.append(gain)
    verdict = {
        "beats": "DiSK beats KD",
        "loses": "KD beats DiSK",
        "within": "no difference beyond the seed spread",
    }[outcome]
    lines.append(
        f"- {student}: DiSK − KD = {gain:+.2f} points (standard error {spread:.2f}): {verdict}."
    )
  grows = len(gains) > 1 and all(later > earlier for earlier, later in zip(gains, gains[1:]))
  if len(gains) > 1:
    lines.append(
        "- The gain "
        + ("grows" if grows else "does not grow monotonically")
        + " as the student's capacity shrinks ("
        + ", ".join(f"{g:+.2f}" for g in gains)
        + " from the largest to the smallest student)."
    )
  beats = sum("DiSK beats KD" in line for line in lines)
  trend = grows or len(gains) == 1  # one student: there is no trend to test
  if beats == len(gains) and trend:
    verdict = "is reproduced here."
  else:
    verdict = (
        f"is not reproduced here: DiSK beats KD for {beats} of {len(gains)} students"
        + ("" if trend else ", and the gain does not grow as capacity shrinks")
        + "."
    )
  lines.append(
      "- The paper's central claim (DiSK beats KD, more so for smaller students) " + verdict
  )
  return lines


def observations(variant: str, table_cells: dict, results: dict) -> list[str]:
  """The gate's mean value on the test split, and runs that ended at chance level."""
  lines = []
  for student, row in table_cells.items():
    gates = [results[stage]["gate"] for stage in row["disk"]["stages"]]
    lines.append(
        f"- {student}: DiSK's mean gate g(x) on the test split is "
        + ", ".join(f"{g:.3f}" for g in gates)
        + " (per seed)"
        + (
            ": the gate saturates, so the budget did not bind at these settings."
            if min(gates) > 0.95
            else "."
        )
    )
  chance = 100.0 / table.settings(variant)["num_classes"]
  collapsed = sorted(
      stage
      for stage, r in results.items()
      if stage != "teacher" and 100 * r["accuracy"] < chance + 2.0
  )
  if collapsed:
    lines.append(
        f"- Runs that ended at chance level ({chance:.0f}%; candidates included): "
        + ", ".join(f"`{stage}`" for stage in collapsed)
        + "."
    )
  return lines


def write_csv(path: str, variant: str, table_cells: dict, results: dict, macs: dict) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(
        [
            "student",
            "macs",
            "method",
            "tuned_value",
            "stage",
            "test_accuracy",
            "validation_accuracy",
            "agreement",
            "teacher_accuracy",
        ]
    )
    for student, row in table_cells.items():
      for method, cell in row.items():
        for stage in cell["stages"]:
          r = results[stage]
          writer.writerow(
              [
                  student,
                  f"{macs[student]:.0f}",
                  method,
                  cell["value"],
                  stage,
                  f"{r['accuracy']:.4f}",
                  f"{r['evals']['validation']['accuracy']:.4f}",
                  f"{r.get('agreement', float('nan')):.4f}",
                  f"{r.get('teacher_accuracy', float('nan')):.4f}",
              ]
          )


def write_plot(path: str, table_cells: dict, macs: dict) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6, 4))
  students = list(table_cells)
  x = np.array([macs[s] / 1e6 for s in students])
  for offset, method in enumerate(table.METHODS):
    stats = [mean_std(table_cells[s][method]["test"]) for s in students]
    ax.errorbar(
        x * (1 + 0.03 * (offset - 2)),
        [m for m, _ in stats],
        yerr=[sd for _, sd in stats],
        marker="o",
        capsize=3,
        label=LABELS[method],
    )
  # Cells dragged down by runs that collapsed to chance would flatten every other line: the axis
  # starts a little below CE (the table lists those cells).
  ce_low = min(mean_std(table_cells[s]["ce"]["test"])[0] for s in students)
  ax.set_ylim(bottom=ce_low - 5)
  ax.set_xscale("log")
  ax.set_xlabel("student MACs per image (millions)")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title("DiSK and baselines by student capacity")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_report(config, results: dict, *, out_dir: str, name: str, command: str, variant: str):
  del config
  os.makedirs(out_dir, exist_ok=True)
  s = table.settings(variant)
  table_cells = cells(variant, results)
  macs = {student: student_macs(variant, student) for student in s["students"]}
  teacher = results["teacher"]
  lines = [
      f"# DiSK table, variant `{variant}`",
      "",
      f"Command: `{command}`",
      "",
      "Protocol:" + table.__doc__.split("Protocol:")[1].split("Variants:")[0].rstrip(),
      "",
      f"Teacher {s['teacher'][0]} (trained on {s['teacher'][2]}): test accuracy "
      f"{100 * teacher['accuracy']:.2f}%, validation {100 * teacher['evals']['validation']['accuracy']:.2f}%.",
      "",
      "Test accuracy (%), mean ± std over seeds " + ", ".join(map(str, s["seeds"])) + "; "
      "the tuned value (chosen on validation) in brackets.",
      "",
      "| method | "
      + " | ".join(f"{st} ({macs[st] / 1e6:.2f} M MACs)" for st in s["students"])
      + " |",
      "|---|" + "---|" * len(s["students"]),
  ]
  for method in table.METHODS:
    row = [LABELS[method]]
    for student in s["students"]:
      cell = table_cells[student][method]
      tuned = (
          "" if cell["value"] is None else f" [{table.grid(variant, method)[0]}={cell['value']:g}]"
      )
      row.append(format_mean_std(cell["test"]) + tuned)
    lines.append("| " + " | ".join(row) + " |")
  lines += ["", "## Claims", ""] + claims(variant, table_cells)
  lines += ["", "## Observations", ""] + observations(variant, table_cells, results)
  lines += [
      "",
      "## Published CIFAR-100 numbers (top-1 %, CE / KD / DiSK), for comparison only",
      "",
      "| pair | CE | KD | DiSK |",
      "|---|---|---|---|",
  ]
  lines += [f"| {pair} | {ce} | {kd} | {d} |" for pair, (ce, kd, d) in PAPER.items()]
  paths = {
      "md": os.path.join(out_dir, f"{name}.md"),
      "csv": os.path.join(out_dir, f"{name}.csv"),
      "png": os.path.join(out_dir, f"{name}.png"),
  }
  with open(paths["md"], "w") as f:
    f.write("\n".join(lines) + "\n")
  write_csv(paths["csv"], variant, table_cells, results, macs)
  write_plot(paths["png"], table_cells, macs)
  return paths
