"""The fidelity table (Stanton et al., PAPERS.md §6): Markdown + CSV + plots from a finished run.

Reads each stage's results.json (test split: the implicit evaluator; train split: the evaluator
"train_split", the teachers' train set through the eval transforms) and its metrics.jsonl (the train
loss per logged step), aggregates each row over seeds (mean ± sample std) and states, for each of
the paper's six findings, whether this run reproduces it — computed from the numbers, with the
seed spread (experiments/reports/seed_stats.py), never typed in.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from experiments.configs import fidelity as table
from experiments.reports.config_doc import variant_text
from experiments.reports import fidelity_plots
from experiments.reports import report_files
from experiments.reports.seed_stats import compare, format_mean_std, mean_std
from kd_jax.train import writers

# Published Table 2 of Stanton et al. (teacher acc / student acc / agreement / predictive KL for
# ensembles of m = 1, 3, 5 teachers), for comparison only.
PAPER_TABLE2 = {
    "IMDB (LSTM)": {
        1: (79.36, 80.35, 86.49, 0.124),
        3: (81.81, 81.13, 89.83, 0.064),
        5: (82.22, 81.17, 90.79, 0.052),
    },
    "ImageNet (ResNet-50)": {
        1: (74.8, 75.3, 85.5, 0.217),
        3: (76.4, 75.5, 87.8, 0.157),
        5: (76.7, 75.6, 88.4, 0.142),
    },
}
PAPER_THRESHOLD = 0.375  # the smallest interpolation weight with near-100 % agreement (paper)
NEAR_FULL = 99.0  # "near 100 %" agreement, in %
PLATEAU_FALL = 0.1  # on its plateau: the train loss fell < 10 % over the run's last quarter
# Per-stage numbers: (column, evaluator, metric); accuracies and agreements in %.
COLUMNS = (
    ("accuracy", "eval", "accuracy"),
    ("teacher_accuracy", "eval", "teacher_accuracy"),
    ("agreement", "eval", "agreement"),
    ("predictive_kl", "eval", "predictive_kl"),
    ("train_accuracy", "train_split", "accuracy"),
    ("train_agreement", "train_split", "agreement"),
    ("train_kl", "train_split", "predictive_kl"),
)
PERCENT = {"accuracy", "teacher_accuracy", "agreement", "train_accuracy", "train_agreement"}


def stage_numbers(result: dict) -> dict:
  out = {}
  for column, evaluator, key in COLUMNS:
    value = result["evals"].get(evaluator, {}).get(key)
    if value is not None:
      out[column] = 100 * value if column in PERCENT else value
  return out


def plateau(rows: list[dict]) -> dict:
  """Train-loss convergence of one run from its metrics.jsonl rows (split "train").

  Windows of a tenth of the run: `mid` ends at 75 % of the steps, `last` at the end.
  fall = (mid − last) / mid: how much the loss still fell over the last quarter of the run;
  small once the loss has reached its plateau (a self-distilled student's KD loss could reach 0,
  so the fall is relative to the level reached, not to the whole descent from the start).
  """
  points = sorted((r["step"], r["loss"]) for r in rows if r.get("split") == "train" and "loss" in r)
  if len(points) < 10:
    return {}
  steps, losses = np.asarray(points, np.float64).T
  total = steps[-1]

  def window(end: float) -> float:
    chosen = losses[(steps > end - total / 10) & (steps <= end)]
    return float(chosen.mean()) if len(chosen) else float("nan")

  mid, last = window(0.75 * total), window(total)
  return {"final_loss": last, "fall": (mid - last) / mid if mid > 0 else float("nan")}


def collect(variant: str, results: dict, workdir: str | None) -> dict:
  """{"teachers": [...], "pairs": [...], "rows": {row: [...]}}: per-stage numbers by group."""
  s = table.settings(variant)

  def numbers(stage):
    out = {"stage": stage, **stage_numbers(results[stage])}
    if workdir is not None:
      curve = writers.read_metrics(os.path.join(workdir, stage))
      out.update(plateau(curve))
      out["curve"] = [
          (r["step"], r["loss"]) for r in curve if r.get("split") == "train" and "loss" in r
      ]
    return out

  return {
      "teachers": [numbers(table.teacher_stage(i)) for i in range(s["teachers"])],
      "pairs": [numbers(table.pair_stage(seed)) for seed in s["seeds"]],
      "rows": {
          row: [numbers(table.stage(row, seed)) for seed in s["seeds"]]
          for row in table.student_rows(s)
      },
  }


def values(runs: list[dict], column: str) -> list[float]:
  return [run[column] for run in runs]


def cell(runs: list[dict], column: str, digits: int = 2) -> str:
  return format_mean_std(values(runs, column), digits)


def below(vals, level: float) -> bool:
  """Whether the mean is below `level` by more than twice its standard error."""
  mean, std = mean_std(vals)
  return mean + 2 * std / np.sqrt(len(vals)) < level


def _ordered(rows: dict, names: list[str]) -> str:
  return ", ".join(f"{n} {np.mean(values(rows[n], 'agreement')):.2f}%" for n in names)


def findings(variant: str, data: dict) -> list[tuple[str, str]]:
  """[(finding, verdict)] for the paper's six findings, each from the numbers."""
  s = table.settings(variant)
  rows, pairs = data["rows"], data["pairs"]
  out = []
  m1 = rows["m1"]
  gap, error, outcome = compare(values(m1, "agreement"), values(pairs, "agreement"))
  reproduced = below(values(m1, "agreement"), NEAR_FULL)
  out.append(
      (
          "1. Self-distillation does not reach full fidelity",
          f"{'Reproduced' if reproduced else 'Not reproduced'}: the student with its teacher's "
          f"architecture agrees with it on {cell(m1, 'agreement')}% of test images "
          f"({'below' if reproduced else 'not below'} {NEAR_FULL:g}% beyond the seed spread). "
          f"Two independently trained teachers agree on {cell(pairs, 'agreement')}%; "
          f"distillation adds {gap:+.2f} points (standard error {error:.2f}: "
          f"{'beyond' if outcome != 'within' else 'within'} the seed spread).",
      )
  )
  reproduced = below(values(m1, "train_agreement"), NEAR_FULL)
  gap, error, outcome = compare(values(m1, "train_agreement"), values(m1, "agreement"))
  out.append(
      (
          "2. The student does not match its teacher even on the distillation data",
          f"{'Reproduced' if reproduced else 'Not reproduced'}: agreement on the teachers' "
          f"train set (clean images) is {cell(m1, 'train_agreement')}% against "
          f"{cell(m1, 'agreement')}% on test ({gap:+.2f} points, {outcome} the seed spread "
          f"by 2 standard errors of {error:.2f}).",
      )
  )
  policies = ["m1", "mixup", "noise", "data"]
  best = max(policies, key=lambda n: np.mean(values(rows[n], "agreement")))
  mixup_wins = all(
      compare(values(rows["mixup"], "agreement"), values(rows[n], "agreement"))[2] == "beats"
      for n in policies
      if n != "mixup"
  )
  more = s["other_data"][1] > s["train"][1]
  larger, smaller = ("data", "m1") if more else ("m1", "data")
  gap, error, outcome = compare(
      values(rows[larger], "agreement"), values(rows[smaller], "agreement")
  )
  out.append(
      (
          "3. MixUp gives the best fidelity; more distillation data raises agreement",
          f"{'Reproduced' if mixup_wins else 'Not reproduced'} for MixUp: the best test agreement "
          f"is {best}'s (m1 = baseline augmentation; {_ordered(rows, policies)}). "
          f"{'Reproduced' if outcome == 'beats' else 'Not reproduced'} for the data: distilling "
          f"on {max(s['other_data'][1], s['train'][1])} instead of "
          f"{min(s['other_data'][1], s['train'][1])} images changes agreement by {gap:+.2f} "
          f"points (standard error {error:.2f}).",
      )
  )
  sizes = [f"m{m}" for m in s["ensemble_sizes"]]
  means = [np.mean(values(rows[n], "agreement")) for n in sizes]
  kls = [np.mean(values(rows[n], "predictive_kl")) for n in sizes]
  rises = all(a < b for a, b in zip(means, means[1:]))
  gap, error, outcome = compare(values(rows[sizes[-1]], "agreement"), values(m1, "agreement"))
  reproduced = rises and outcome == "beats"
  out.append(
      (
          "4. Agreement rises (and predictive KL falls) with the ensemble size",
          f"{'Reproduced' if reproduced else 'Not reproduced'}: agreement "
          + " → ".join(f"{n} {v:.2f}%" for n, v in zip(sizes, means))
          + f" ({sizes[-1]} − m1 = {gap:+.2f}, standard error {error:.2f}); predictive KL "
          + " → ".join(f"{v:.4f}" for v in kls)
          + f" ({'falls' if all(a > b for a, b in zip(kls, kls[1:])) else 'does not fall'}"
          " monotonically). Paper (IMDB): 86.49 → 89.83 → 90.79.",
      )
  )
  weights = [0.0] + list(s["interpolation"])
  curve = [m1] + [rows[table.interpolation_row(w)] for w in s["interpolation"]]
  near = [w for w, runs in zip(weights, curve) if not below(values(runs, "agreement"), NEAR_FULL)]
  first = min(near) if near else None
  reproduced = first is not None and first > 0 and all(w in near for w in weights if w >= first)
  out.append(
      (
          "5. Near-full agreement only from a large enough initial weight of the teacher",
          f"{'Reproduced' if reproduced else 'Not reproduced'}: agreement for λ = "
          + ", ".join(
              f"{w:g}: {np.mean(values(runs, 'agreement')):.2f}%" for w, runs in zip(weights, curve)
          )
          + f" (λ = 0 is the m1 row); "
          + (
              f"within {NEAR_FULL:g}% from λ = {first:g} on (paper: λ ≥ {PAPER_THRESHOLD})."
              if first is not None
              else f"no λ reaches {NEAR_FULL:g}% (paper: λ ≥ {PAPER_THRESHOLD})."
          ),
      )
  )
  candidates = ["m1"] + sizes[1:] + ["mixup", "noise", "data"]
  by_agreement = max(candidates, key=lambda n: np.mean(values(rows[n], "agreement")))
  by_accuracy = max(candidates, key=lambda n: np.mean(values(rows[n], "accuracy")))
  gap, error, outcome = compare(
      values(rows[by_accuracy], "accuracy"), values(rows[by_agreement], "accuracy")
  )
  agreement_ranks = np.argsort(
      np.argsort([np.mean(values(rows[n], "agreement")) for n in candidates])
  )
  accuracy_ranks = np.argsort(
      np.argsort([np.mean(values(rows[n], "accuracy")) for n in candidates])
  )
  spearman = float(np.corrcoef(agreement_ranks, accuracy_ranks)[0, 1])
  reproduced = by_accuracy != by_agreement and outcome == "beats"
  out.append(
      (
          "6. Better fidelity does not always mean better accuracy",
          f"{'Reproduced' if reproduced else 'Not reproduced'}: "
          + (
              f"the best agreement is {by_agreement}'s, the best accuracy {by_accuracy}'s "
              f"({gap:+.2f} points of accuracy, standard error {error:.2f}); "
              if by_accuracy != by_agreement
              else f"the best agreement and the best accuracy are both {by_agreement}'s; "
          )
          + f"rank correlation of agreement and accuracy over {', '.join(candidates)}: "
          f"{spearman:+.2f}.",
      )
  )
  return out


def convergence(data: dict) -> list[str]:
  """One line per group that has curves: its final train loss and how much the loss still fell
  over its last quarter (a plateau when below PLATEAU_FALL)."""
  groups = {"teachers (CE)": data["teachers"], **{f"{r} (KD)": v for r, v in data["rows"].items()}}
  lines = []
  for name, runs in groups.items():
    if not all("fall" in run for run in runs):
      continue
    falls = values(runs, "fall")
    flat = all(fall < PLATEAU_FALL for fall in falls)
    lines.append(
        f"| {name} | {cell(runs, 'final_loss', 4)} | {format_mean_std(falls, 3)} | "
        f"{'yes' if flat else 'no'} |"
    )
  return lines


def write_csv(path: str, variant: str, data: dict) -> None:
  s = table.settings(variant)
  numbers = [c for c, _, _ in COLUMNS] + ["final_loss", "fall"]
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["stage", "role", "row", "seed", "teachers", *numbers])
    for i, run in enumerate(data["teachers"]):
      writer.writerow([run["stage"], "teacher", "", "", i, *[run.get(k, "") for k in numbers]])
    for seed, run in zip(s["seeds"], data["pairs"]):
      pair = f"{(seed + 1) % s['teachers']} vs {seed % s['teachers']}"
      writer.writerow([run["stage"], "pair", "", seed, pair, *[run.get(k, "") for k in numbers]])
    for row, runs in data["rows"].items():
      for seed, run in zip(s["seeds"], runs):
        members = " ".join(map(str, table.row_spec(s, row, seed)["teachers"]))
        writer.writerow(
            [run["stage"], "student", row, seed, members, *[run.get(k, "") for k in numbers]]
        )


def write_report(
    config, results: dict, *, out_dir: str, name: str, command: str, variant: str, workdir=None
) -> dict[str, str]:
  """Writes NAME.md, NAME.csv, NAME.png (findings) and, given the workdir, NAME_curves.png."""
  del config
  s = table.settings(variant)
  data = collect(variant, results, workdir)
  paths = report_files.paths(out_dir, name)
  write_csv(paths["csv"], variant, data)
  fidelity_plots.findings_figure(paths["png"], variant, data)
  if workdir is not None:
    paths["curves"] = os.path.join(out_dir, f"{name}_curves.png")
    fidelity_plots.curves_figure(paths["curves"], variant, data)
  teachers, pairs = data["teachers"], data["pairs"]
  lines = [
      f"# Fidelity study (Stanton et al., 2021) — `{name}`",
      "",
      "Produced by the committed code with:",
      "",
      "```bash",
      command,
      "```",
      "",
      f"Variant `{variant}`: {variant_text(table.__doc__, variant)}",
      "",
      f"Teachers ({len(teachers)}): test accuracy {cell(teachers, 'accuracy')}%, accuracy on "
      f"their train set {cell(teachers, 'train_accuracy')}% (mean ± std over teachers). "
      f"Two independently trained teachers (`pair`, teacher s + 1 against teacher s) agree on "
      f"{cell(pairs, 'agreement')}% of test and {cell(pairs, 'train_agreement')}% of train "
      f"images. Student rows: mean ± std over seeds {', '.join(map(str, s['seeds']))}; seed s "
      "distils teacher s (ensembles: teachers s, s + 1, ...). Accuracy and agreement in %, "
      "predictive KL(teacher ‖ student) in nats; test = the test split, train = the teachers' "
      "train set through the eval transforms (for `data` a part of its distillation set).",
      "",
      "| row | student acc | teacher acc | test agreement | train agreement | test KL | train KL |",
      "|---|---|---|---|---|---|---|",
  ]
  for row, runs in data["rows"].items():
    lines.append(
        f"| {row} | {cell(runs, 'accuracy')} | {cell(runs, 'teacher_accuracy')} | "
        f"{cell(runs, 'agreement')} | {cell(runs, 'train_agreement')} | "
        f"{cell(runs, 'predictive_kl', 4)} | {cell(runs, 'train_kl', 4)} |"
    )
  lines += [
      "",
      "Rows: `m1`/`m3`/`m5` ensembles of 1/3/5 teachers with the baseline augmentation (`m1` is "
      "the self-distillation row and λ = 0 of the init rows); `mixup` and `noise` one teacher "
      f"with MixUp or Gaussian noise; `data` one teacher on {s['other_data'][1]} distillation "
      f"images instead of {s['train'][1]}; `init_λ` one teacher, the student starting at "
      "λ·θ_teacher + (1 − λ)·θ_random.",
      "",
      "## The paper's findings",
      "",
  ]
  lines += [f"- **{title}.** {verdict}" for title, verdict in findings(variant, data)]
  lines += [
      "",
      "Paper (Table 2), for comparison:",
      "",
      "| dataset | m | teacher acc | student acc | agreement | predictive KL |",
      "|---|---|---|---|---|---|",
  ]
  for dataset, paper_rows in PAPER_TABLE2.items():
    for m, (t, st, a, k) in paper_rows.items():
      lines.append(f"| {dataset} | {m} | {t} | {st} | {a} | {k} |")
  lines += ["", f"![findings]({name}.png)", ""]
  table_lines = convergence(data)
  if table_lines:
    lines += [
        "## Training curves",
        "",
        "Train loss per logged step (metrics.jsonl of each stage). `last-quarter fall`: how much "
        "the loss fell from the tenth of the run ending at 75 % of its steps to its last tenth, "
        f"relative to the former; a row counts as on its plateau when every seed's fall is below "
        f"{PLATEAU_FALL:g}.",
        "",
        "| run | final train loss | last-quarter fall | plateau |",
        "|---|---|---|---|",
        *table_lines,
        "",
        f"![curves]({name}_curves.png)",
        "",
    ]
  lines += [f"Per-run numbers: [{name}.csv]({name}.csv).", ""]
  with open(paths["md"], "w") as f:
    f.write("\n".join(lines))
  return paths
