"""The SEA tables (PAPERS.md §1, Tables 2–4): Markdown + CSV + plot from a finished run of
configs/sea.py.

Cells are the downstream evaluators' leave-one-fold-out scores at each run's final or best
checkpoint (SEA rows: by validation embedding MSE): mean ± sample std over seeds of each seed's
fold mean. Rows per student: (a) SEA on T, (b) trained the teacher's way on G without
distillation (the paper's baseline), (c) SEA on G. Whether the paper's claims hold is computed
from the numbers with the shared seed statistics (experiments/reports/seed_stats.py: a difference
counts when it exceeds twice its standard error over seeds), never typed in.
"""

from __future__ import annotations

import csv

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import sea as table
from experiments.reports.config_doc import variant_text
from experiments.reports import report_files
from experiments.reports import seed_stats
from kd_jax.models import audio

# Published numbers (PAPERS.md §1), for comparison only: Table 3 (US8K acc, ESC-50 acc, SONYC
# micro-AUPRC) of the SEA students, and Table 2's SONYC micro-AUPRC AVC-trained vs SEA-trained.
PAPER_TABLE3 = {
    "L3": (0.759, 0.737, 0.810),
    "Student 0": (0.707, 0.613, 0.823),
    "Student 1": (0.655, 0.512, 0.793),
    "Student 2": (0.673, 0.498, 0.797),
    "Student 3": (0.648, 0.440, 0.784),
}
PAPER_TABLE2 = {
    "S0": (0.812, 0.823),
    "S1": (0.789, 0.793),
    "S2": (0.790, 0.797),
    "S3": (0.784, 0.784),
}
BASELINE = "teacher_way"  # the paper's Table 2 baseline: (b)


def metric(s: dict, task: str) -> str:
  return "micro_auprc" if s["tasks"][task]["options"].get("multilabel") else "accuracy"


def cells(variant: str, results: dict) -> dict:
  """{(student, row, sampling): {"stages", "seeds", task: [per-seed score], "validation_mse"}}
  (validation_mse: SEA rows only)."""
  s = table.settings(variant)
  out = {}
  for seed in s["seeds"]:
    for key in table.student_rows(variant, seed):
      stage = table.stage_name(*key, seed)
      cell = out.setdefault(key, {"stages": [], "seeds": [], "validation_mse": []})
      evals = results[stage]["evals"]
      cell["stages"].append(stage)
      cell["seeds"].append(seed)
      if "embedding_mse" in evals["validation"]:
        cell["validation_mse"].append(evals["validation"]["embedding_mse"])
      for task in s["tasks"]:
        cell.setdefault(task, []).append(evals[task][f"{metric(s, task)}_mean"])
  return out


def parameter_count(spec: dict) -> int:
  """Parameters plus BatchNorm statistics (Keras counts both, as the paper's Table 1)."""
  model = audio.audio_net(filters=spec["filters"], **spec["mel"])
  rate = spec["mel"]["sample_rate"]
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, rate)), train=False))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


def _fmt(values) -> str:
  return seed_stats.format_mean_std(values, digits=3)


def _row_cell(table_cells: dict, student: str, row: str) -> dict:
  return table_cells[(student, row, None if row == BASELINE else "random")]


def _comparisons(s: dict, table_cells: dict, task: str, against: str, want: str):
  """Per student: (line, holds) for (a) vs `against` on `task`; `want` "beats" or "loses"."""
  out = []
  for student in s["students"]:
    a = _row_cell(table_cells, student, "target")[task]
    b = _row_cell(table_cells, student, against)[task]
    gap, error, verdict = seed_stats.compare(a, b)
    holds = verdict == want
    out.append(
        (
            f"- {student}, {task}: (a) − {table.ROW_LABELS[against][:3]} = {gap:+.3f} "
            f"(standard error {error:.3f}): (a) {verdict}" + (" — as the paper." if holds else "."),
            holds,
        )
    )
  return out


def claims(variant: str, table_cells: dict) -> list[str]:
  s = table.settings(variant)
  target, others = s["target_task"], s["other_tasks"]
  lines = []
  if len(s["seeds"]) == 1:
    lines.append("- One seed only: no seed spread, so every difference counts as one.")
  against = [r for r in (BASELINE, "general") if r in s["rows"]]
  for row in against:
    found = _comparisons(s, table_cells, target, row, "beats")
    lines += [line for line, _ in found]
    lines.append(
        f"- Claim 1 (target-trained students beat {table.ROW_LABELS[row]} on the target task, "
        f"{target}): holds for {sum(h for _, h in found)} of {len(found)} students."
    )
  for row in against:
    for task in others:
      found = _comparisons(s, table_cells, task, row, "loses")
      lines += [line for line, _ in found]
      lines.append(
          f"- Claim 2 (they lose generality against {table.ROW_LABELS[row]} on the other "
          f"domain, {task}): the target-trained student is worse for "
          f"{sum(h for _, h in found)} of {len(found)} students."
      )
  student = s["sampling_student"]
  for task in (target, *others):
    scores = {x: table_cells[(student, "target", x)][task] for x in table.STRATEGIES}
    means = {x: seed_stats.mean_std(v)[0] for x, v in scores.items()}
    spread = max(means.values()) - min(means.values())
    seed_std = max(seed_stats.mean_std(v)[1] for v in scores.values())
    best = max(means, key=means.get)
    if spread <= 0.02:
      verdict = "holds (within the paper's 0.02)."
    elif spread <= 2 * seed_std:
      verdict = "holds within the seed spread, not within the paper's 0.02."
    else:
      verdict = "does not hold: the spread exceeds 0.02 and twice the seed std."
    lines.append(
        f"- Claim 3 (sampling strategy matters little), {student} on {task}: the strategies' "
        f"means span {spread:.3f} (best {best}; largest seed std {seed_std:.3f}); {verdict}"
    )
  return lines


def write_csv(path: str, variant: str, table_cells: dict, results: dict) -> None:
  s = table.settings(variant)
  tasks = list(s["tasks"])
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(
        ["student", "row", "sampling", "d", "seed", "stage", "best_step", "validation_mse"]
        + [f"{t}_{metric(s, t)}" for t in tasks]
        + [f"{t}_{metric(s, t)}_fold_std" for t in tasks]
    )
    for (student, row, sampling), cell in table_cells.items():
      mse = cell["validation_mse"] or [None] * len(cell["seeds"])
      for seed, stage, loss in zip(cell["seeds"], cell["stages"], mse):
        evals = results[stage]["evals"]
        best = results[stage].get("model_selection", {}).get("step", "")
        writer.writerow(
            [student, row, sampling or "", _dim(s, student), seed, stage, best]
            + ["" if loss is None else f"{loss:.5g}"]
            + [f"{evals[t][metric(s, t) + '_mean']:.4f}" for t in tasks]
            + [f"{evals[t][metric(s, t) + '_std']:.4f}" for t in tasks]
        )


def write_plot(path: str, variant: str, table_cells: dict, teacher: dict | None) -> None:
  plt = report_files.pyplot()

  s = table.settings(variant)
  students, tasks = list(s["students"]), [s["target_task"], *s["other_tasks"]]
  fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
  for ax, task in zip(axes[0], tasks):
    x = np.arange(len(students))
    for offset, row in zip((-0.08, 0.0, 0.08), s["rows"]):
      stats = [seed_stats.mean_std(_row_cell(table_cells, st, row)[task]) for st in students]
      ax.errorbar(
          x + offset,
          [m for m, _ in stats],
          yerr=[sd for _, sd in stats],
          marker="o",
          capsize=3,
          label=table.ROW_LABELS[row],
      )
    if teacher is not None:
      ax.axhline(teacher[task], color="gray", linestyle="--", label="teacher")
    ax.set_xticks(x, [f"{st}\nd={_dim(s, st)}" for st in students])
    ax.set_ylabel(metric(s, task))
    ax.set_title(f"{task} ({'target' if task == s['target_task'] else 'other'} domain)")
  axes[0][0].legend(fontsize=7)
  report_files.save_figure(fig, path, dpi=120)


def _dim(s: dict, student: str) -> int:
  spec = s["students"][student]
  return spec["dim"] or spec["filters"][-1]


def _teacher_lines(s: dict, results: dict, tasks: list[str]) -> tuple[dict | None, list[str]]:
  if "teacher" not in results:
    return None, []
  evals = results["teacher"]["evals"]
  teacher = {t: evals[t][f"{metric(s, t)}_mean"] for t in tasks}
  validation = evals["validation"]
  own = ", ".join(
      f"{k} {validation[k]:.3f}" for k in ("crop_match", "crop_nt_xent") if k in validation
  )
  line = "Teacher (self-supervised on G): " + ", ".join(
      f"{t} {metric(s, t)} {v:.3f}" for t, v in teacher.items()
  )
  return teacher, [line + (f"; on G's validation clips {own}." if own else "."), ""]


def write_report(config, results: dict, *, out_dir: str, name: str, command: str, variant: str):
  del config
  paths = report_files.paths(out_dir, name)
  s = table.settings(variant)
  table_cells = cells(variant, results)
  tasks = list(s["tasks"])
  rows = list(s["rows"])
  teacher, teacher_lines = _teacher_lines(s, results, tasks)
  lines = [
      f"# SEA tables, variant `{variant}`",
      "",
      f"Command: `{command}`",
      "",
      "Protocol" + table.__doc__.split("Protocol")[1].split("Variants:")[0].rstrip(),
      "",
      f"Variant `{variant}`: " + variant_text(table.__doc__, variant),
      "",
      *teacher_lines,
      "## Tables 2–3: rows (a) SEA on T, (b) the teacher's way on G (the paper's baseline), "
      "(c) SEA on G",
      "",
      f"{', '.join(f'{t}: {metric(s, t)}' for t in tasks)} (target task: {s['target_task']}); "
      "mean ± std over seeds "
      + ", ".join(map(str, s["seeds"]))
      + " (each seed: the mean over the held-out folds). Rows: "
      + "; ".join(table.ROW_LABELS[r] for r in rows)
      + ".",
      "",
      "| student | filters | d | params | "
      + " | ".join(f"{t} {table.ROW_LABELS[r][:3]}" for t in tasks for r in rows)
      + " |",
      "|---|---|---|---|" + "---|" * (len(rows) * len(tasks)),
  ]
  for student, spec in s["students"].items():
    row = [student, "/".join(map(str, spec["filters"])), str(_dim(s, student))]
    row.append(f"{parameter_count(spec) / 1e6:.3f} M")
    row += [_fmt(_row_cell(table_cells, student, r)[t]) for t in tasks for r in rows]
    lines.append("| " + " | ".join(row) + " |")
  student = s["sampling_student"]
  lines += [
      "",
      f"## Table 4: sampling strategy for φ ({student}, d = {_dim(s, student)}, "
      f"k = {s['sample_size']}, target pool)",
      "",
      "| sampling | seeds | " + " | ".join(tasks) + " | validation MSE |",
      "|---|---|" + "---|" * (len(tasks) + 1),
  ]
  for x in table.STRATEGIES:
    cell = table_cells[(student, "target", x)]
    lines.append(
        f"| {x} | {len(cell['seeds'])} | "
        + " | ".join(_fmt(cell[t]) for t in tasks)
        + f" | {seed_stats.mean_std(cell['validation_mse'])[0]:.4g} |"
    )
  lines += [
      "",
      "The validation MSE is in each strategy's own φ space (its PCA), so it is not comparable "
      "across rows as a measure of quality; the downstream scores are.",
      "",
      "## Claims",
      "",
      *claims(variant, table_cells),
      "",
      "## Published numbers (PAPERS.md §1), for comparison only",
      "",
      "Table 3 (US8K acc / ESC-50 acc / SONYC micro-AUPRC): "
      + "; ".join(f"{k} {a:.3f} / {b:.3f} / {c:.3f}" for k, (a, b, c) in PAPER_TABLE3.items())
      + ". Table 2 (SONYC micro-AUPRC, AVC-trained → SEA-trained): "
      + "; ".join(f"{k} {a:.3f} → {b:.3f}" for k, (a, b) in PAPER_TABLE2.items())
      + ". Table 4: strategies within 0.02 of each other.",
  ]
  report_files.write_markdown(paths["md"], lines)
  write_csv(paths["csv"], variant, table_cells, results)
  write_plot(paths["png"], variant, table_cells, teacher)
  return paths
