"""The method zoo table: Markdown + CSV + plot from a finished run of configs/zoo.py.

Seed 0 of a tuned method is its candidate with the best validation accuracy (the rule
`kd_jax.train.choices` applied to the other seeds); the other seeds ran with that choice. Cells are
test accuracy, mean ± sample std over seeds. Which methods beat CE and KD is computed from the
numbers, never typed in. Published CIFAR-100 numbers come from `PUBLISHED` below, only those PAPERS.md gives, and are
printed as published, beside ours for the paper variant, apart for the others. "Claims" says which
statements the run supports, each computed from the seeds.
"""

from __future__ import annotations

import csv

import numpy as np

from experiments.configs import zoo as table
from experiments.reports.config_doc import description, variant_text
from experiments.reports import report_files
from experiments.reports.seed_stats import compare, format_mean_std, mean_std

LABELS = {
    "ce": "CE",
    "kd": "KD",
    "fitnets": "FitNets",
    "at": "AT",
    "rkd": "RKD",
    "crd": "CRD",
    "dkd": "DKD",
    "dist": "DIST",
    "pkt": "PKT",
    "sp": "SP",
    "nst": "NST",
    "vid": "VID",
    "reviewkd": "ReviewKD",
    "ofd": "OFD",
}

# Published CIFAR-100 top-1 (%) — not ours — only as docs/PAPERS.md gives them (its
# Baselines section: last-epoch top-1 of KD and CRD, Tian et al., ICLR 2020, Table 1). Every other
# method, the teachers and the CE students print NOT_GIVEN: no number is typed in from elsewhere.
SOURCE = (
    "docs/PAPERS.md, Baselines: CIFAR-100 last-epoch top-1 of KD and CRD "
    "(Tian, Krishnan, Isola, ICLR 2020, Table 1)"
)
NOT_GIVEN = "not in PAPERS.md"
PUBLISHED = {
    ("resnet56", "resnet20"): {"kd": 70.66, "crd": 71.16},
    ("resnet32x4", "resnet8x4"): {"kd": 73.33, "crd": 75.51},
}


def published_cell(pair, method: str) -> str:
  """ "70.66", or NOT_GIVEN where PAPERS.md has no number for the pair and method."""
  value = PUBLISHED.get(tuple(pair), {}).get(method)
  return NOT_GIVEN if value is None else f"{value:.2f}"


def chosen_candidate(variant: str, pair, method: str, results: dict) -> tuple[str, object]:
  """(stage, value) of the candidate with the best validation accuracy (ties: the first)."""
  _, values = table.grid(variant, pair, method)
  stages = [table.candidate_stage(pair, method, v) for v in values]
  scores = [results[stage]["evals"]["validation"]["accuracy"] for stage in stages]
  best = int(np.argmax(scores))
  return stages[best], values[best]


def method_stages(variant: str, pair, method: str, results: dict) -> tuple[list, object]:
  """The stages of one cell (one per seed) and the tuned value (None for CE)."""
  seeds = table.settings(variant)["seeds"]
  if method == "ce":
    return [table.seed_stage(pair, method, seed) for seed in seeds], None
  first, value = chosen_candidate(variant, pair, method, results)
  return [first] + [table.seed_stage(pair, method, seed) for seed in seeds[1:]], value


def cells(variant: str, results: dict) -> dict:
  """{pair: {method: {"stages", "value", "test": [%], "validation": [%]}}}."""
  s = table.settings(variant)
  out = {}
  for pair in s["pairs"]:
    out[tuple(pair)] = {}
    for method in s["methods"]:
      stages, value = method_stages(variant, pair, method, results)
      out[tuple(pair)][method] = {
          "stages": stages,
          "value": value,
          "test": [100 * results[stage]["accuracy"] for stage in stages],
          "validation": [
              100 * results[stage]["evals"]["validation"]["accuracy"] for stage in stages
          ],
      }
  return out


def _tuned(variant, pair, method, cell) -> str:
  if cell["value"] is None:
    return ""
  return f" [{table.grid(variant, pair, method)[0]}={cell['value']:g}]"


def comparisons(pair, row: dict) -> list[str]:
  """Each distillation method against CE and KD, beyond the seed spread or not."""
  lines = []
  for baseline in ("ce", "kd"):
    if baseline not in row:
      continue
    groups = {"beats": [], "loses": [], "within": []}
    for method, cell in row.items():
      if method in ("ce", baseline):
        continue
      gap, _, outcome = compare(cell["test"], row[baseline]["test"])
      groups[outcome].append(f"{LABELS[method]} ({gap:+.2f})")
    name = LABELS[baseline]
    lines.append(
        f"- {pair[0]} → {pair[1]}, against {name} (mean difference in points): "
        f"better beyond the seed spread: {', '.join(groups['beats']) or 'none'}; "
        f"worse: {', '.join(groups['loses']) or 'none'}; "
        f"no difference beyond the spread: {', '.join(groups['within']) or 'none'}."
    )
  return lines


def _names(methods) -> str:
  return ", ".join(LABELS[m] for m in methods) or "none"


def claims(variant: str, table_cells: dict, results: dict) -> list[str]:
  """Which statements this run supports, each from the seeds (beyond twice the standard error of
  the difference of means, `seed_stats.compare`), per pair: distillation helps at all (KD over
  CE), which methods improve on CE and on KD, and whether the published order CRD > KD (the
  numbers docs/PAPERS.md gives for both CIFAR-100 pairs) holds here."""
  lines = []
  for pair, row in table_cells.items():
    teacher = 100 * results[table.teacher_stage(pair)]["evals"]["validation"]["accuracy"]
    ce_validation, _ = mean_std(row["ce"]["validation"]) if "ce" in row else (None, None)
    lines.append(f"**{pair[0]} → {pair[1]}**")
    if ce_validation is not None and teacher - ce_validation < 1.0:
      lines.append(
          f"- The teacher leads the CE student by only {teacher - ce_validation:+.2f} points on "
          "validation: this setting leaves no room to show a distillation gain, so no claim "
          "below that a method beats CE is evidence about the method."
      )
    outcome = {}
    for baseline in ("ce", "kd"):
      if baseline not in row:
        continue
      for method, cell in row.items():
        if method not in ("ce", baseline):
          outcome[method, baseline] = compare(cell["test"], row[baseline]["test"])[2]
    if ("kd", "ce") in outcome:
      verdict = {
          "beats": "supported: KD beats CE",
          "loses": "contradicted: CE beats KD",
          "within": "not supported: KD and CE are within the seed spread",
      }[outcome["kd", "ce"]]
      lines.append(f"- Distillation helps this student at all: {verdict}.")
    for baseline in ("ce", "kd"):
      others = [m for m in row if (m, baseline) in outcome]
      if not others:
        continue
      better = [m for m in others if outcome[m, baseline] == "beats"]
      worse = [m for m in others if outcome[m, baseline] == "loses"]
      lines.append(
          f"- Improves on {LABELS[baseline]} beyond the seed spread: {_names(better)} "
          f"({len(better)} of {len(others)}); worse than {LABELS[baseline]}: {_names(worse)}; "
          f"the rest are not distinguishable from {LABELS[baseline]} with {len(row[baseline]['test'])} seeds."
      )
    if ("crd", "kd") in outcome:
      verdict = {
          "beats": "holds here",
          "loses": "is reversed here (KD beats CRD)",
          "within": "is not resolved here (within the seed spread)",
      }[outcome["crd", "kd"]]
      lines.append(f"- The published CIFAR-100 order CRD > KD (docs/PAPERS.md) {verdict}.")
  where = (
      "CIFAR-100 at the papers' pairs and values"
      if variant == "paper"
      else "this dataset, these two networks, this training length and each method's candidate "
      "weights; it says nothing about the methods' CIFAR-100 numbers"
  )
  lines.append(f"- Scope: every statement above is about {where}.")
  return lines


def observations(variant: str, table_cells: dict, results: dict) -> list[str]:
  """The teacher's lead over CE on validation (the room the table has), and collapsed runs."""
  lines = []
  for pair, row in table_cells.items():
    teacher = 100 * results[table.teacher_stage(pair)]["evals"]["validation"]["accuracy"]
    if "ce" in row:
      ce, _ = mean_std(row["ce"]["validation"])
      lines.append(
          f"- {pair[0]} → {pair[1]}: the teacher leads the CE student by {teacher - ce:+.2f} "
          f"points on validation ({teacher:.2f} vs {ce:.2f})."
      )
  chance = 100.0 / table.settings(variant)["num_classes"]
  collapsed = sorted(
      stage
      for stage, r in results.items()
      if not stage.startswith("teacher") and 100 * r["accuracy"] < chance + 2.0
  )
  if collapsed:
    lines.append(
        f"- Runs that ended at chance level ({chance:.0f}%; candidates included): "
        + ", ".join(f"`{stage}`" for stage in collapsed)
        + "."
    )
  return lines


def result_table(variant: str, table_cells: dict, results: dict) -> list[str]:
  paper = variant == "paper"
  header, rule = "| method |", "|---|"
  for pair in table_cells:
    header += f" {pair[0]} → {pair[1]} |" + (" published |" if paper else "")
    rule += "---|" + ("---|" if paper else "")
  lines = [header, rule]
  teacher_row = "| Teacher |"
  for pair in table_cells:
    teacher_row += f" {100 * results[table.teacher_stage(pair)]['accuracy']:.2f} |"
    teacher_row += f" {published_cell(pair, 'teacher')} |" if paper else ""
  lines.append(teacher_row)
  columns = len(table_cells) * (2 if paper else 1)
  separated = False
  for method in table.settings(variant)["methods"]:
    if method not in ("ce",) + table.LOGIT_METHODS and not separated:
      lines.append("| *feature and relational methods* |" + " |" * columns)
      separated = True
    row = f"| {LABELS[method]} |"
    for pair, cells_ in table_cells.items():
      cell = cells_[method]
      row += f" {format_mean_std(cell['test'])}{_tuned(variant, pair, method, cell)} |"
      row += f" {published_cell(pair, method)} |" if paper else ""
    lines.append(row)
  return lines


def published_section(variant: str) -> list[str]:
  lines = [
      "",
      "## Published CIFAR-100 numbers (top-1 %), "
      + (
          "the column beside ours above"
          if variant == "paper"
          else "for reference only: another " "dataset and networks"
      ),
      "",
  ]
  if variant != "paper":
    pairs = list(PUBLISHED)
    lines += [
        "| method | " + " | ".join(f"{t} → {s}" for t, s in pairs) + " |",
        "|---|" + "---|" * len(pairs),
    ]
    for method in ("teacher",) + table.METHODS:
      label = "Teacher" if method == "teacher" else LABELS[method]
      lines.append(f"| {label} | " + " | ".join(published_cell(p, method) for p in pairs) + " |")
    lines.append("")
  lines += [f'Source: {SOURCE}. Rows marked "{NOT_GIVEN}" have no number there.']
  return lines


def write_csv(path: str, variant: str, table_cells: dict, results: dict) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(
        [
            "teacher",
            "student",
            "method",
            "tuned_value",
            "stage",
            "test_accuracy",
            "validation_accuracy",
            "agreement",
            "published_cifar100",
        ]
    )
    for pair, row in table_cells.items():
      for method, cell in row.items():
        published = PUBLISHED.get(pair, {}).get(method)
        for stage in cell["stages"]:
          r = results[stage]
          writer.writerow(
              [
                  pair[0],
                  pair[1],
                  method,
                  cell["value"],
                  stage,
                  f"{r['accuracy']:.4f}",
                  f"{r['evals']['validation']['accuracy']:.4f}",
                  f"{r.get('agreement', float('nan')):.4f}",
                  "" if published is None else published,
              ]
          )


def write_plot(path: str, variant: str, table_cells: dict, results: dict) -> None:
  plt = report_files.pyplot()

  methods = table.settings(variant)["methods"]
  fig, axes = plt.subplots(1, len(table_cells), figsize=(7 * len(table_cells), 4), squeeze=False)
  for ax, (pair, row) in zip(axes[0], table_cells.items()):
    stats = [mean_std(row[m]["test"]) for m in methods]
    x = np.arange(len(methods))
    ax.bar(x, [m for m, _ in stats], yerr=[sd for _, sd in stats], capsize=3, color="tab:blue")
    ax.axhline(
        100 * results[table.teacher_stage(pair)]["accuracy"], ls="--", c="k", label="teacher"
    )
    if "ce" in row:
      ax.axhline(mean_std(row["ce"]["test"])[0], ls=":", c="tab:red", label="CE student")
    low = min(m for m, _ in stats)
    ax.set_ylim(bottom=max(0.0, low - 3))
    ax.set_xticks(x, [LABELS[m] for m in methods], rotation=45, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{pair[0]} → {pair[1]}")
    ax.legend()
  report_files.save_figure(fig, path, dpi=120)


def write_report(config, results: dict, *, out_dir: str, name: str, command: str, variant: str):
  del config
  paths = report_files.paths(out_dir, name)
  s = table.settings(variant)
  table_cells = cells(variant, results)
  lines = [
      f"# Method zoo table, variant `{variant}`",
      "",
      f"Command: `{command}`",
      "",
      description(table.__doc__),
      "",
      f"Setting: {variant_text(table.__doc__, variant)}",
      "",
      "Test accuracy (%), mean ± std over seeds " + ", ".join(map(str, s["seeds"])) + "; "
      "the tuned value (chosen on validation) in brackets."
      + (" Published: the papers' CIFAR-100 numbers (not ours)." if variant == "paper" else ""),
      "",
  ]
  lines += result_table(variant, table_cells, results)
  lines += ["", "## Against CE and KD", ""]
  for pair, row in table_cells.items():
    lines += comparisons(pair, row)
  lines += ["", "## Claims", ""] + claims(variant, table_cells, results)
  lines += ["", "## Observations", ""] + observations(variant, table_cells, results)
  lines += published_section(variant)
  report_files.write_markdown(paths["md"], lines)
  write_csv(paths["csv"], variant, table_cells, results)
  write_plot(paths["png"], variant, table_cells, results)
  return paths
