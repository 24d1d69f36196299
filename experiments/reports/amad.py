"""The AMAD table (PAPERS.md §3): Markdown + CSV + plot from a finished run of configs/amad.py.

Cells are test accuracy, mean ± sample std over seeds; where a row's weight was tuned on a
student's seed-0 candidates, that student's seed 0 is the candidate with the best validation
accuracy (the rule the other seeds' `choices` applied). A difference counts as beyond the seed
spread when it exceeds twice its standard error. Every sentence is computed from the numbers.

The alignment plot reads the "attention_alignment" evaluator's a_ij of a trained pair
(`kd_jax.evaluators.attention_alignment`).
"""

from __future__ import annotations

import csv

import numpy as np

from experiments.configs import amad as table
from experiments.reports.config_doc import description, variant_text
from experiments.reports import report_files
from experiments.reports.seed_stats import compare, format_mean_std, mean_std
from kd_jax.evaluators.attention_alignment import alignment_matrices

LABELS = {
    "ce": "CE",
    "kd": "KD",
    "one_to_one": "KD + one-to-one",
    "head_mean": "KD + head-mean",
    "head_pool": "KD + head-pool",
    "amad_mse": "KD + AMAD mse",
    "amad_kl": "KD + AMAD kl",
    "amad_learnable": "KD + AMAD learnable",
    "amad_token_kl": "KD + AMAD token_kl",
}
BASELINES = ("one_to_one", "head_pool", "head_mean")


# ------------------------------------------------------------------------------------------------
# Cells and claims.


def _validation(result: dict) -> float:
  return result["evals"]["validation"]["accuracy"]


def cells(variant: str, results: dict) -> dict:
  """{task: {heads: {row: {"stages", "weight", "test", "agreement"}}}}."""
  out = {}
  for task, spec in table.settings(variant)["tasks"].items():
    out[task] = {}
    for heads in spec["heads"]:
      out[task][heads] = {}
      for row in table.rows(variant, heads):
        names, tried = table.cell_stages(variant, task, heads, row)
        weight = None
        if tried:
          best = tried[int(np.argmax([_validation(results[c]) for c in tried]))]
          weight = table.candidates(variant, row)[tried.index(best)]
          if heads == table.tuning_heads(variant, task, row):
            names = [best] + names
        out[task][heads][row] = {
            "stages": names,
            "weight": weight,
            "test": [100 * results[n]["accuracy"] for n in names],
            "agreement": [100 * results[n].get("agreement", np.nan) for n in names],
        }
  return out


def claims(table_cells: dict) -> tuple[list[str], list[str]]:
  """(a Markdown table of AMAD − baseline per cell, summary sentences)."""
  header = "| task | heads | AMAD variant | " + " | ".join(LABELS[b] for b in BASELINES) + " |"
  lines = [header, "|---|---|---|" + "---|" * len(BASELINES)]
  tally = {b: {"beats": 0, "loses": 0, "within": 0} for b in BASELINES + ("kd",)}
  for task, by_heads in table_cells.items():
    for heads, row in by_heads.items():
      for variant in (r for r in row if r.startswith("amad_")):
        out = []
        for baseline in BASELINES + ("kd",):
          if baseline not in row:
            out.append("—")
            continue
          gain, error, verdict = compare(row[variant]["test"], row[baseline]["test"])
          tally[baseline][verdict] += 1
          out.append(f"{gain:+.2f} ± {error:.2f} ({verdict})")
        lines.append(f"| {task} | {heads} | {LABELS[variant]} | " + " | ".join(out[:-1]) + " |")
  summary = []
  for baseline, counts in tally.items():
    n = sum(counts.values())
    if n:
      summary.append(
          f"- AMAD vs {LABELS[baseline]}: beats it beyond the seed spread in {counts['beats']} "
          f"of {n} comparisons, loses in {counts['loses']}, within the spread in "
          f"{counts['within']}."
      )
  pooling = {k: tally["head_pool"][k] + tally["head_mean"][k] for k in tally["kd"]}
  one = tally["one_to_one"]
  verdict = lambda c: (
      "yes"
      if c["beats"] > 0 and c["loses"] == 0 and c["beats"] >= c["within"]
      else ("no" if c["beats"] == 0 else "only in part")
  )
  summary.append(
      f"- Does AMAD beat one-to-one attention KD here, beyond the seed spread? {verdict(one)} "
      f"({one['beats']} of {sum(one.values())}). Pooling baselines (head-pool, head-mean)? "
      f"{verdict(pooling)} ({pooling['beats']} of {sum(pooling.values())})."
  )
  return lines, summary


def alignment_lines(variant: str, results: dict) -> tuple[list[str], dict]:
  """Sentences on the recorded a_ij, and {task: {row: [layers, H_t, H_s]}} for the plot."""
  lines, matrices = [], {}
  for task, spec in table.settings(variant)["tasks"].items():
    heads = min(spec["heads"])
    stages = {
        row: table.seed_stage(task, heads, row, table.ALIGNMENT_SEED)
        for row in table.ALIGNMENT_ROWS
    }
    matrices[task] = {
        row: alignment_matrices(results[stage]["evals"]["alignment"])
        for row, stage in stages.items()
    }
    amad, ce = (matrices[task][row] for row in table.ALIGNMENT_ROWS)
    entropy = lambda a: float(np.mean(-np.sum(a * np.log(a), axis=-1)))
    top = np.argmax(amad[-1], axis=-1)
    feeds = "; ".join(
        f"student head {j} ← teacher heads {[int(i) for i in np.flatnonzero(top == j)]}"
        for j in range(amad.shape[-1])
    )
    lines.append(
        f"- `{task}`, {heads}-head students (seed {table.ALIGNMENT_SEED}, validation split): "
        f"mean entropy of a_i· {entropy(amad):.3f} nats for {LABELS[table.ALIGNMENT_ROWS[0]]} "
        f"vs {entropy(ce):.3f} for {LABELS[table.ALIGNMENT_ROWS[1]]} (uniform: "
        f"{np.log(heads):.3f}; lower = each teacher head leans on fewer student heads); "
        f"largest a_ij in the last mapped layer: {feeds}."
    )
  return lines, matrices


def write_csv(path: str, command: str, table_cells: dict, results: dict) -> None:
  with open(path, "w", newline="") as f:
    f.write(f"# command: {command}\n")
    writer = csv.writer(f)
    writer.writerow(
        [
            "task",
            "student_heads",
            "row",
            "weight",
            "layer_map",
            "stage",
            "seed",
            "test_accuracy",
            "agreement",
        ]
    )
    for task, by_heads in table_cells.items():
      for heads, row in by_heads.items():
        for name, cell in row.items():
          weight, layer_map = cell["weight"] or ("", "")
          for stage in cell["stages"]:
            writer.writerow(
                [
                    task,
                    heads,
                    name,
                    weight,
                    layer_map,
                    stage,
                    stage.rsplit("_s", 1)[1],
                    f"{100 * results[stage]['accuracy']:.2f}",
                    f"{100 * results[stage].get('agreement', float('nan')):.2f}",
                ]
            )


def write_plot(path: str, table_cells: dict, matrices: dict) -> None:
  plt = report_files.pyplot()

  tasks = list(table_cells)
  layers = max(m[table.ALIGNMENT_ROWS[0]].shape[0] for m in matrices.values())
  fig, axes = plt.subplots(
      len(tasks), 2 + layers, figsize=(5 + 2.2 * (1 + layers), 3.6 * len(tasks)), squeeze=False
  )
  for t, task in enumerate(tasks):
    ax = axes[t, 0]
    rows = list(LABELS)
    for offset, (heads, by_row) in enumerate(table_cells[task].items()):
      ys = [r for r in rows if r in by_row]
      stats = [mean_std(by_row[r]["test"]) for r in ys]
      ax.errorbar(
          [m for m, _ in stats],
          [rows.index(r) + 0.2 * (offset - 1) for r in ys],
          xerr=[sd for _, sd in stats],
          fmt="o",
          capsize=3,
          label=f"{heads} heads",
      )
    ax.set_yticks(range(len(rows)), [LABELS[r] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%)")
    ax.set_title(f"{task}: mean ± std over seeds", fontsize=9)
    ax.legend(fontsize=7)
    panels = [(row, layer) for layer in range(layers) for row in table.ALIGNMENT_ROWS[:1]]
    panels.append((table.ALIGNMENT_ROWS[1], layers - 1))
    for p, (row, layer) in enumerate(panels):
      ax = axes[t, 1 + p]
      a = matrices[task][row]
      if layer >= a.shape[0]:
        ax.axis("off")
        continue
      image = ax.imshow(a[layer], vmin=0, vmax=a.max(), cmap="viridis", aspect="auto")
      ax.set_xlabel("student head j")
      ax.set_ylabel("teacher head i")
      ax.set_title(f"a_ij, {LABELS[row]}, mapped layer {layer}", fontsize=8)
      fig.colorbar(image, ax=ax, fraction=0.046)
  report_files.save_figure(fig, path, dpi=110)


def write_report(config, results: dict, *, out_dir: str, name: str, command: str, variant: str):
  del config
  paths = report_files.paths(out_dir, name)
  s = table.settings(variant)
  table_cells = cells(variant, results)
  doc = description(table.__doc__)
  lines = [f"# AMAD table, variant `{variant}`", "", f"Command: `{command}`", "", doc, ""]
  lines += [f"Variant `{variant}`: " + variant_text(table.__doc__, variant), ""]
  for task, spec in s["tasks"].items():
    teacher = results[table.teacher_stage(task)]
    lines += [
        f"## `{task}` ({spec['dataset']})",
        "",
        f"Teacher {spec['teacher'][0]} {dict(spec['teacher'][1])}: test accuracy "
        f"{100 * teacher['accuracy']:.2f}%, validation {100 * _validation(teacher):.2f}%. "
        f"Students {spec['student'][0]} {dict(spec['student'][1], num_heads='H_s')}.",
        "",
        "Test accuracy (%), mean ± std over seeds " + ", ".join(map(str, s["seeds"])) + "; "
        "the attention weight chosen on validation in brackets (— : the row does not apply).",
        "",
        "| row | " + " | ".join(f"H_s = {h}" for h in spec["heads"]) + " |",
        "|---|" + "---|" * len(spec["heads"]),
    ]
    for row in s["rows"]:
      cells_row = []
      for heads in spec["heads"]:
        cell = table_cells[task][heads].get(row)
        if cell is None:
          same = row == "head_pool" and heads == s["teacher_heads"]
          cells_row.append("= one-to-one" if same else "—")
          continue
        tuned = "" if cell["weight"] is None else f" [w={cell['weight'][0]:g}"
        tuned += "" if not tuned or cell["weight"][1] == "uniform" else f", {cell['weight'][1]}"
        cells_row.append(format_mean_std(cell["test"]) + tuned + ("]" if tuned else ""))
      lines.append(f"| {LABELS[row]} | " + " | ".join(cells_row) + " |")
    lines.append("")
  comparison, summary = claims(table_cells)
  lines += [
      "## AMAD against the baselines",
      "",
      "AMAD − baseline in test accuracy points ± the standard error of the difference; "
      "'beats' / 'loses' when it exceeds twice that error, 'within' otherwise.",
      "",
      *comparison,
      "",
      *summary,
  ]
  align, matrices = alignment_lines(variant, results)
  lines += ["", "## Soft alignment a_ij (Eq. 2) of trained students", "", *align]
  report_files.write_markdown(paths["md"], lines)
  write_csv(paths["csv"], command, table_cells, results)
  write_plot(paths["png"], table_cells, matrices)
  return paths
