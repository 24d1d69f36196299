"""The CompRess table (PAPERS.md §5): Markdown, CSV and plot from a run of configs/compress.py.

Cells are test accuracy (%) of the linear probe, 1-NN and cluster alignment on each task, mean ±
sample std over seeds; the teacher row is the pretrained encoder itself, evaluated as it comes by
the 0-step stage `teacher` (one network: no seed spread). Whether the paper's claims hold is
computed from the numbers here, never typed in: "A beats B" needs the difference of means to
exceed twice its standard error over seeds.
"""

from __future__ import annotations

import csv

import numpy as np

from experiments.configs import compress as table
from experiments.reports.config_doc import description, variant_text
from experiments.reports import report_files
from experiments.reports.seed_stats import compare, format_mean_std, mean_std
from kd_jax.methods import compress

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
PAPER_MOMENTUM = 0.999
# NN and CA claims are judged on the tasks where the frozen teacher's 1-NN accuracy reaches this
# (%): on a task the teacher cannot serve, mimicking it says little about compression.
TEACHER_NN_FLOOR = 80.0
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
  """{"tau": {value: {task_eval: [% per ablation seed]}}, "queue": {...}}; the main row's stage
  of each seed stands for the main value."""
  s = table.settings(variant)
  grids = {
      "tau": sorted({0.04, *s["temperatures"]}),
      "queue": sorted({s["queue"], *s["queues"]}),
  }
  main_value = {"tau": 0.04, "queue": s["queue"]}
  out = {}
  for key, values in grids.items():
    out[key] = {}
    for value in values:
      stages = [
          table.stage_name(table.ABLATION_ROW, seed)
          if value == main_value[key]
          else table.ablation_stage(key, value, seed)
          for seed in s["ablation_seeds"][key]
      ]
      out[key][value] = {
          f"{task}_{e}": [100 * results[st]["evals"][f"{task}_{e}"]["accuracy"] for st in stages]
          for task in s["tasks"]
          for e, _ in EVALS
      }
  return out


def teacher_serves(table_cells: dict) -> dict:
  """{task: True when the frozen teacher's 1-NN accuracy is at least TEACHER_NN_FLOOR %}."""
  return {task: rows["teacher"]["nn"][0] >= TEACHER_NN_FLOOR for task, rows in table_cells.items()}


def scale_lines(variant: str) -> list[str]:
  """The run-length facts the issue asks for: the momentum rule and what it leaves of the random
  start, and the step at which each bank holds no random anchor."""
  s = table.settings(variant)
  steps, batch, horizon = s["steps"], s["batch"], s["momentum_horizon"]
  m = compress.run_momentum(PAPER_MOMENTUM, horizon, steps)
  fifth = max(1, round(0.2 * steps))
  lines = [
      f"Momentum of CompRess-2q: m = min({PAPER_MOMENTUM}, 0.01^(1/(f·T))) with f = {horizon:g} "
      f"and T = {steps} steps gives m = {m:.4f}. The key encoder then holds "
      f"{100 * compress.random_start_share(m, fifth):.3g} % of its random start after the first "
      f"20 % of the run ({fifth} steps) and {100 * compress.random_start_share(m, steps):.3g} % "
      f"at its end (the paper's m = {PAPER_MOMENTUM} over this run would leave "
      f"{100 * compress.random_start_share(PAPER_MOMENTUM, fifth):.0f} % and "
      f"{100 * compress.random_start_share(PAPER_MOMENTUM, steps):.0f} %).",
      "",
      f"Queue fill: a bank of K rows holds random anchors until step ⌈K/b⌉ (b = {batch}).",
      "",
      "| K | fill step | % of the run |",
      "|---|---|---|",
  ]
  for k in sorted({s["queue"], *s["queues"]}):
    fill = compress.queue_fill_step(k, batch)
    lines.append(f"| {k} | {fill} | {100 * fill / steps:.1f} |")
  return lines


def _verdict(outcome: str) -> str:
  return {"beats": "beats", "loses": "loses to", "within": "ties with"}[outcome]


def _mean_over(cells_by_name: dict, suffix: str, tasks) -> np.ndarray:
  """Per seed: the mean over `tasks` of the `<task>_<suffix>` accuracies."""
  return np.mean([cells_by_name[f"{task}_{suffix}"] for task in tasks], axis=0)


def claims(variant: str, table_cells: dict, ablation: dict) -> list[str]:
  lines = []
  served = teacher_serves(table_cells)
  counted = [task for task, ok in served.items() if ok]
  # 1. Best CompRess variant per task and evaluation vs Reg / CC / CRD, on NN and CA, counted on
  # the tasks the teacher serves.
  wins, total = 0, 0
  for task, rows in table_cells.items():
    for key in ("nn", "ca"):
      best = max(COMPRESS_ROWS, key=lambda r: np.mean(rows[r][key]))
      parts = []
      for base in BASELINES:
        gap, se, outcome = compare(rows[best][key], rows[base][key])
        if served[task]:
          total += 1
          wins += outcome == "beats"
        parts.append(f"{_verdict(outcome)} {LABELS[base]} ({gap:+.1f} ± {se:.1f})")
      note = "" if served[task] else f" (teacher NN < {TEACHER_NN_FLOOR:g} %: not counted)"
      lines.append(f"- {task} {key.upper()}: {LABELS[best]} " + ", ".join(parts) + f".{note}")
  lines.append(
      f'- Claim "CompRess beats Reg, CC and CRD on NN and CA": '
      + (
          "not tested (no task the teacher serves)."
          if not total
          else "holds"
          if wins == total
          else "does not hold"
      )
      + (
          f" here ({wins} of {total} comparisons won beyond twice the standard error, on the "
          f"tasks where the teacher's 1-NN is ≥ {TEACHER_NN_FLOOR:g} %: {', '.join(counted)})."
          if total
          else ""
      )
  )
  # 2. The momentum encoder helps: 2q against the same bank without momentum.
  parts, momentum_wins = [], 0
  for task in counted:
    for key in ("nn", "ca"):
      rows = table_cells[task]
      gap, se, outcome = compare(rows["compress_2q"][key], rows["compress_no_momentum"][key])
      momentum_wins += outcome == "beats"
      parts.append(f"{task} {key.upper()} {gap:+.1f} ± {se:.1f}")
  lines.append(
      '- Claim "the momentum student helps (CompRess-2q beats 2q without momentum)": '
      + ("holds" if parts and momentum_wins == len(parts) else "does not hold")
      + f" ({momentum_wins} of {len(parts)} won beyond twice the standard error: "
      + ", ".join(parts)
      + ")."
  )
  ablation_seeds = table.settings(variant)["ablation_seeds"]

  def seed_text(key):
    seeds = ablation_seeds[key]
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"mean of seeds {', '.join(map(str, seeds))}"

  # 3. Larger banks help: NN accuracy (mean over the served tasks) rising with K.
  tasks = counted or list(table_cells)
  nn = {k: _mean_over(r, "nn", tasks) for k, r in ablation["queue"].items()}
  sizes = sorted(nn)
  means = {k: float(np.mean(v)) for k, v in nn.items()}
  if len(sizes) < 2:  # a variant without queue ablations
    verdict = "not tested (one K)."
  else:
    rising = all(means[b] >= means[a] for a, b in zip(sizes, sizes[1:]))
    gap, se, outcome = compare(nn[sizes[-1]], nn[sizes[0]])
    verdict = (
        "holds" if rising and outcome == "beats" else "does not hold"
    ) + f" (K={sizes[-1]} − K={sizes[0]}: {gap:+.1f} ± {se:.1f}; means rise with K: {rising})."
  lines.append(
      f'- Claim "larger banks help" (NN, mean over {", ".join(tasks)}, {table.ABLATION_ROW}, '
      f"{seed_text('queue')}: "
      + ", ".join(f"K={k}: {means[k]:.1f}" for k in sizes)
      + "): "
      + verdict
  )
  # 4. τ = 0.04 best: the mean over every task and evaluation.
  tau = {t: np.mean([v for v in r.values()], axis=0) for t, r in ablation["tau"].items()}
  tau_means = {t: float(np.mean(v)) for t, v in tau.items()}
  best_tau = max(tau_means, key=tau_means.get)
  if len(tau) < 2:
    verdict = "not tested (one τ)."  # a variant without τ ablations (smoke)
  elif best_tau == 0.04:
    spread = [f"vs τ={t:g}: {compare(tau[0.04], tau[t])[2]}" for t in sorted(tau) if t != 0.04]
    verdict = "holds (0.04 " + ", ".join(spread) + ", at twice the standard error)."
  else:
    verdict = f"does not hold (τ = {best_tau:g} is best here)."
  lines.append(
      f'- Claim "τ = 0.04 is best" (mean of all {len(table_cells) * len(EVALS)} accuracies, '
      f"{seed_text('tau')}: "
      + ", ".join(f"τ={t:g}: {v:.1f}" for t, v in sorted(tau_means.items()))
      + "): "
      + verdict
  )
  for key, title in (("tau", "τ"), ("queue", "K")):
    if len(ablation_seeds[key]) == 1:
      lines.append(
          f"- The {title} ablation is a single run per value (seed {ablation_seeds[key][0]}): "
          "differences smaller than the seed spread of the main rows are not evidence either way."
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
  plt = report_files.pyplot()

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
    stats = [mean_std(queue[k][f"{task}_nn"]) for k in queue]
    ax.errorbar(
        list(queue),
        [m for m, _ in stats],
        yerr=[sd for _, sd in stats],
        marker="o",
        capsize=2,
        label=f"{task} NN",
    )
  ax.set_xscale("log", base=2)
  ax.set_xlabel(f"queue size K ({table.ABLATION_ROW}, ablation seeds)")
  ax.set_ylabel("test accuracy (%)")
  ax.legend(fontsize=7)
  report_files.save_figure(fig, path, dpi=110)


def write_report(config, results: dict, *, out_dir: str, name: str, command: str, variant: str):
  del config
  paths = report_files.paths(out_dir, name)
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
    ablation_seeds = ", ".join(map(str, s["ablation_seeds"][key]))
    lines += [
        "",
        f"Ablation of {title} ({LABELS[table.ABLATION_ROW]}, seeds {ablation_seeds}):",
        "",
    ]
    lines += ["| " + title + " | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for value, r in ablation[key].items():
      lines.append(
          f"| {value:g} | "
          + " | ".join(
              format_mean_std(r[f"{t}_{e}"], digits=1) for t in table_cells for e, _ in EVALS
          )
          + " |"
      )
  served = teacher_serves(table_cells)
  lines += ["", "## Scale of the run", ""] + scale_lines(variant)
  lines += [
      "",
      "Tasks and the frozen teacher (test %): "
      + "; ".join(
          f"{task} NN {table_cells[task]['teacher']['nn'][0]:.1f} / CA "
          f"{table_cells[task]['teacher']['ca'][0]:.1f}"
          + ("" if served[task] else f" (below the {TEACHER_NN_FLOOR:g} % floor)")
          for task in table_cells
      )
      + ".",
  ]
  lines += ["", "## Claims", ""] + claims(variant, table_cells, ablation)
  lines += [
      "",
      "## Published ImageNet numbers (linear / NN / CA %), for comparison only",
      "",
      "| network | linear | NN | CA |",
      "|---|---|---|---|",
  ]
  lines += [f"| {k} | {a} | {b} | {c} |" for k, (a, b, c) in PAPER.items()]
  report_files.write_markdown(paths["md"], lines)
  write_csv(paths["csv"], variant, results)
  write_plot(paths["png"], table_cells, ablation)
  return paths
