"""The DiSK table (PAPERS.md §4): Markdown + CSV + plot from a finished run of configs/disk.py.

Every row but CE starts from the CE checkpoint of its student and seed; its model is the round
best on validation (round 0 = that checkpoint), as results.json's `model_selection` records. Seed 0
of a tuned method is its candidate with the best validation accuracy (the rule
`kd_jax.train.choices` applied to the other seeds). Cells are test accuracy, mean ± sample std over
seeds (experiments/reports/seed_stats.py). The gate diagnostics per round come from DiSK's
`test_rounds` evaluator (`results["history"]`). Whether the paper's claims hold is computed from
the numbers, never typed in.
"""

from __future__ import annotations

import csv

import jax.numpy as jnp
import numpy as np

from experiments.configs import disk as table
from experiments.reports import config_doc
from experiments.reports import report_files
from experiments.reports.seed_stats import compare, format_mean_std, mean_std
from kd_jax.models import get_model
from kd_jax.models.summary import dense_macs

LABELS = {
    "ce": "CE (the start)",
    "cecont": "CE continued",
    "kd": "KD",
    "fitnets": "FitNets",
    "at": "AT",
    "disk": "DiSK",
}
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
  """The stages of one cell (one per seed) and the tuned value (None for CE rows)."""
  seeds = table.settings(variant)["seeds"]
  if method == "ce":
    return [table.ce_stage(student, seed) for seed in seeds], None
  if method == "cecont":
    return [table.seed_stage(student, method, seed) for seed in seeds], None
  first, value = chosen_candidate(variant, student, method, results)
  return [first] + [table.seed_stage(student, method, seed) for seed in seeds[1:]], value


def round_of(variant: str, method: str, step: int) -> int:
  """The round a step of a continued run ends (0: before the first, the CE checkpoint)."""
  s = table.settings(variant)
  total, first, every = table.round_steps(s, method)
  return s["rounds"] if step == total else max(step - first, 0) // every


def student_macs(variant: str, student: str) -> float:
  s = table.settings(variant)
  model = get_model(student, num_classes=s["num_classes"])
  return dense_macs(model, jnp.zeros(INPUT_SHAPES[s["dataset"]]))


def cells(variant: str, results: dict) -> dict:
  """{student: {method: {"test", "validation", "rounds", "value", "stages"}}}; rounds are the
  chosen rounds (None for the CE checkpoint itself)."""
  out = {}
  for student in table.settings(variant)["students"]:
    out[student] = {}
    for method in table.METHODS:
      stages, value = method_stages(variant, student, method, results)
      rounds = [
          (
              round_of(variant, method, results[stage]["model_selection"]["step"])
              if "model_selection" in results[stage]
              else None
          )
          for stage in stages
      ]
      out[student][method] = {
          "stages": stages,
          "value": value,
          "rounds": rounds,
          "test": [100 * results[stage]["accuracy"] for stage in stages],
          "validation": [
              100 * results[stage]["evals"]["validation"]["accuracy"] for stage in stages
          ],
      }
  return out


def _verdict(outcome: str, a: str, b: str) -> str:
  return {"beats": f"{a} beats {b}", "loses": f"{b} beats {a}", "within": "within the seed spread"}[
      outcome
  ]


def claims(variant: str, table_cells: dict) -> list[str]:
  """DiSK vs KD per student (beyond the seed spread), whether the gain grows as capacity shrinks
  (students are listed from largest to smallest), and both against CE continued."""
  lines, gains, beats = [], [], 0
  for student, row in table_cells.items():
    gain, spread, outcome = compare(row["disk"]["test"], row["kd"]["test"])
    gains.append(gain)
    beats += outcome == "beats"
    lines.append(
        f"- {student}: DiSK − KD = {gain:+.2f} points (standard error {spread:.2f}): "
        f"{_verdict(outcome, 'DiSK', 'KD')}."
    )
    for method in ("disk", "kd"):
      gap, error, result = compare(row[method]["test"], row["cecont"]["test"])
      lines.append(
          f"  - {LABELS[method]} − CE continued = {gap:+.2f} (standard error {error:.2f}): "
          f"{_verdict(result, LABELS[method], 'CE continued')}."
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


def gate_rounds(variant: str, stages: list[str], results: dict) -> list[dict]:
  """Per round, the seeds' mean on the test split of: student accuracy, mean g on the examples
  the student gets wrong / right, the budget term before its ReLU (Σ g·b / n_err − δ), and δ."""
  per_round: dict[int, list[dict]] = {}
  for stage in stages:
    for row in results[stage].get("history", {}).get("test_rounds", []):
      accuracy = row["accuracy"]
      per_round.setdefault(round_of(variant, "disk", row["step"]), []).append(
          {
              "accuracy": 100 * accuracy,
              "gate_wrong": row["gate_wrong"] / max(1 - accuracy, 1e-12),
              "gate_right": (row["gate"] - row["gate_wrong"]) / max(accuracy, 1e-12),
              "budget": row["gate_hardness"] / max(1 - accuracy, 1e-12) - row["delta"],
              "delta": row["delta"],
          }
      )
  return [
      {"round": r, **{k: float(np.mean([e[k] for e in entries])) for k in entries[0]}}
      for r, entries in sorted(per_round.items())
  ]


def gate_section(variant: str, table_cells: dict, results: dict) -> list[str]:
  lines = [
      "Per round, mean over the DiSK seeds on the test split (round 0 = the CE checkpoint with "
      "the warmed-up gate; δ is that of the round's last gate update): the student's accuracy, "
      "the mean gate g(x) on the examples it gets wrong and right, and the budget term "
      "Σ g·b / n_err − δ before its ReLU (> 0: the budget binds).",
  ]
  for student, row in table_cells.items():
    rounds = gate_rounds(variant, row["disk"]["stages"], results)
    if not rounds:
      continue
    lines += [
        "",
        f"{student}:",
        "",
        "| round | test acc. | g on wrong | g on right | budget term | δ |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['round']} | {r['accuracy']:.2f} | {r['gate_wrong']:.3f} | {r['gate_right']:.3f} "
        f"| {r['budget']:+.3f} | {r['delta']:.3f} |"
        for r in rounds
    ]
    ratio = [r["gate_wrong"] / max(r["gate_right"], 1e-12) for r in rounds]
    lines += [
        "",
        f"The gate helps wrong examples {min(ratio):.2f}–{max(ratio):.2f}× as much as right ones "
        + ("(it tells them apart)." if min(ratio) > 1.2 else "(it barely tells them apart)."),
    ]
  return lines


def observations(variant: str, table_cells: dict, results: dict) -> list[str]:
  """Which rounds validation chose, and runs that ended at chance level."""
  lines = []
  for student, row in table_cells.items():
    chosen = "; ".join(
        f"{LABELS[m]} {', '.join(str(r) for r in row[m]['rounds'])}"
        for m in table.METHODS
        if m != "ce"
    )
    lines.append(f"- {student}: rounds chosen on validation per seed (0 = the start): {chosen}.")
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


def write_csv(path: str, table_cells: dict, results: dict, macs: dict) -> None:
  header = ["student", "macs", "method", "tuned_value", "stage", "chosen_round"]
  header += ["test_accuracy", "validation_accuracy", "agreement", "teacher_accuracy"]
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for student, row in table_cells.items():
      for method, cell in row.items():
        for stage, chosen in zip(cell["stages"], cell["rounds"]):
          r = results[stage]
          writer.writerow(
              [student, f"{macs[student]:.0f}", method, cell["value"], stage, chosen]
              + [f"{r['accuracy']:.4f}", f"{r['evals']['validation']['accuracy']:.4f}"]
              + [f"{r.get(k, float('nan')):.4f}" for k in ("agreement", "teacher_accuracy")]
          )


def validation_curve(variant: str, method: str, stages: list[str], results: dict):
  """(rounds, mean validation accuracy % over the stages) from their periodic evaluations."""
  per_round: dict[int, list[float]] = {}
  for stage in stages:
    for row in results[stage].get("history", {}).get("validation", []):
      per_round.setdefault(round_of(variant, method, row["step"]), []).append(100 * row["accuracy"])
  rounds = sorted(per_round)
  return rounds, [float(np.mean(per_round[r])) for r in rounds]


def write_plot(path: str, variant: str, table_cells: dict, results: dict, macs: dict) -> None:
  plt = report_files.pyplot()

  fig, (by_size, by_round) = plt.subplots(1, 2, figsize=(11, 4))
  students = list(table_cells)
  x = np.array([macs[s] / 1e6 for s in students])
  for offset, method in enumerate(table.METHODS):
    stats = [mean_std(table_cells[s][method]["test"]) for s in students]
    by_size.errorbar(
        x * (1 + 0.03 * (offset - 2.5)),
        [m for m, _ in stats],
        yerr=[sd for _, sd in stats],
        marker="o",
        capsize=3,
        label=LABELS[method],
    )
    if method != "ce":
      rounds, curve = validation_curve(
          variant, method, table_cells[students[-1]][method]["stages"], results
      )
      by_round.plot(rounds, curve, marker=".", label=LABELS[method])
  # Cells dragged down by runs that collapsed to chance would flatten every other line: the axis
  # starts a little below the CE checkpoints (the table lists those cells).
  ce_low = min(mean_std(table_cells[s]["ce"]["test"])[0] for s in students)
  by_size.set_ylim(bottom=ce_low - 5)
  by_size.set_xscale("log")
  by_size.set(xlabel="student MACs per image (millions)", ylabel="test accuracy (%)")
  by_size.set_title("by student capacity (best round on validation)")
  by_size.legend(fontsize=8)
  by_round.set(xlabel="round (0 = the CE checkpoint)", ylabel="validation accuracy (%)")
  by_round.set_title(f"{students[-1]}: validation per round, mean over seeds")
  by_round.legend(fontsize=8)
  report_files.save_figure(fig, path, dpi=120)


def write_report(config, results: dict, *, out_dir: str, name: str, command: str, variant: str):
  del config
  paths = report_files.paths(out_dir, name)
  s = table.settings(variant)
  table_cells = cells(variant, results)
  macs = {student: student_macs(variant, student) for student in s["students"]}
  teacher = results["teacher"]
  teacher_validation = 100 * teacher["evals"]["validation"]["accuracy"]
  lines = [f"# DiSK table, variant `{variant}`", "", f"Command: `{command}`", ""]
  lines += [config_doc.description(table.__doc__), ""]
  lines += [f"Setting: {config_doc.variant_text(table.__doc__, variant)}", ""]
  lines += [
      f"Teacher {s['teacher'][0]} (trained on {s['teacher'][2]}): test accuracy "
      f"{100 * teacher['accuracy']:.2f}%, validation {teacher_validation:.2f}%.",
      "",
      "The start of every row but CE: the CE checkpoints, trained from scratch for "
      f"{s['ce_epochs']} epochs; the teacher's lead over them on validation:",
  ]
  for student in s["students"]:
    ce = table_cells[student]["ce"]["validation"]
    lines.append(
        f"- {student}: CE checkpoint {format_mean_std(ce)}% on validation, teacher ahead by "
        f"{teacher_validation - np.mean(ce):+.2f} points."
    )
  lines += [
      "",
      f"Test accuracy (%), mean ± std over seeds {', '.join(map(str, s['seeds']))}, of the "
      f"round best on validation among {s['rounds']} rounds and round 0; the tuned value "
      "(chosen on validation) in brackets.",
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
  lines += ["", "## DiSK's gate per round", ""] + gate_section(variant, table_cells, results)
  lines += ["", "## Observations", ""] + observations(variant, table_cells, results)
  lines += [
      "",
      "## Published CIFAR-100 numbers (top-1 %, CE / KD / DiSK), for comparison only",
      "",
      "| pair | CE | KD | DiSK |",
      "|---|---|---|---|",
  ]
  lines += [f"| {pair} | {ce} | {kd} | {d} |" for pair, (ce, kd, d) in PAPER.items()]
  report_files.write_markdown(paths["md"], lines)
  write_csv(paths["csv"], table_cells, results, macs)
  write_plot(paths["png"], variant, table_cells, results, macs)
  return paths
