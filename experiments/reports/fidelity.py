"""The fidelity table (Stanton et al., docs/PAPERS.md §6): Markdown + CSV + plot from a finished run.

Reads each stage's results (WORKDIR/<stage>/results.json, written by the trainer), aggregates the student
runs over seeds (mean ± sample std), sets the paper's published Table 2 beside ours, and states
which findings our run reproduces — computed from the numbers, never typed in.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from experiments.configs import fidelity as fidelity_config

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
METRICS = ("teacher_accuracy", "accuracy", "agreement", "predictive_kl")
# What each variant is, printed under the command at the top of its report.
VARIANT_NOTES = {
    "cpu": (
        "Variant `cpu`: Fashion-MNIST (real data: 60 000 train / 10 000 test), PreAct ResNet-8 "
        "teachers with 16/32/64 filters (500 SGD steps of 128, lr 0.1 cosine, wd 1e-4, "
        "pad-crop-flip), PreAct ResNet-8 students with 8/16/32 filters (300 SGD Nesterov steps "
        "of 128, lr 0.05 → 1e-6 cosine), τ = 4, α = 0; Gaussian noise σ = 0.1 on [0, 1] pixels; "
        "MixUp λ ~ U[0, 1]. Chosen to fit one 2-core CPU session: about an epoch each, so absolute "
        "accuracies are below converged values and effects are small."
    ),
    "smoke": "Variant `smoke`: a few steps on MNIST-5k, for CI only; numbers are not meaningful.",
    "paper": "Variant `paper`: CIFAR-100, PreAct ResNet-56, the paper's schedule.",
}


def _mean_std(values):
  values = np.asarray(values, np.float64)
  std = values.std(ddof=1) if len(values) > 1 else 0.0
  return float(values.mean()), float(std)


def _fmt(values, scale=100.0, digits=2):
  mean, std = _mean_std(np.asarray(values) * scale)
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarise(config, results: dict) -> dict:
  """{(m, augmentation): {metric: [value per seed]}} plus teacher accuracies."""
  cells = {}
  for stage in config.stage_order:
    if not stage.startswith("student_"):
      continue
    _, m, augmentation, _ = stage.split("_")
    cell = cells.setdefault((int(m[1:]), augmentation), {k: [] for k in METRICS})
    for metric in METRICS:
      cell[metric].append(results[stage][metric])
  teachers = [results[s]["accuracy"] for s in config.stage_order if s.startswith("teacher_")]
  return {"cells": cells, "teachers": teachers}


def findings(summary: dict) -> list[str]:
  """The paper's claims, each checked against our numbers."""
  cells = summary["cells"]
  sizes = sorted(m for m, aug in cells if aug == "baseline")
  agreement = {m: np.mean(cells[(m, "baseline")]["agreement"]) for m in sizes}
  kl = {m: np.mean(cells[(m, "baseline")]["predictive_kl"]) for m in sizes}
  out = []
  rises = all(agreement[a] < agreement[b] for a, b in zip(sizes, sizes[1:]))
  out.append(
      f"{'Reproduced' if rises else 'Not reproduced'}: agreement rises strictly with the ensemble size "
      f"(paper: 86.5 → 89.8 → 90.8 on IMDB). Ours: "
      + " → ".join(f"m={m}: {100 * agreement[m]:.2f}%" for m in sizes)
      + "."
  )
  falls = all(kl[a] > kl[b] for a, b in zip(sizes, sizes[1:]))
  out.append(
      f"{'Reproduced' if falls else 'Not reproduced'}: predictive KL falls with the ensemble size. "
      "Ours: " + " → ".join(f"m={m}: {kl[m]:.4f}" for m in sizes) + "."
  )
  best = max(agreement.values())
  out.append(
      f"{'Reproduced' if best < 0.99 else 'Not reproduced'}: the student does not match its "
      f"teacher — the best mean agreement is {100 * best:.2f}%, below 100% although the student "
      "is trained only to match the teacher (α = 0)."
  )
  m1 = sizes[0]
  augs = [a for a in fidelity_config.AUGMENTATIONS if (m1, a) in cells]
  if len(augs) > 1:
    aug_agreement = {a: np.mean(cells[(m1, a)]["agreement"]) for a in augs}
    mixup_wins = all(aug_agreement["mixup"] > v for a, v in aug_agreement.items() if a != "mixup")
    out.append(
        f"{'Reproduced' if mixup_wins else 'Not reproduced'}: MixUp gives the highest "
        f"agreement of the augmentation policies (m = {m1}). Ours: "
        + ", ".join(f"{a} {100 * v:.2f}%" for a, v in aug_agreement.items())
        + "."
    )
    aug_acc = {a: np.mean(cells[(m1, a)]["accuracy"]) for a in augs}
    fidelity_order = sorted(augs, key=aug_agreement.get)
    accuracy_order = sorted(augs, key=aug_acc.get)
    out.append(
        "Fidelity and accuracy "
        + (
            "rank the augmentations differently"
            if fidelity_order != accuracy_order
            else "rank the augmentations the same way"
        )
        + f" (paper: better fidelity does not always mean better accuracy). Agreement order: "
        f"{' < '.join(fidelity_order)}; accuracy order: {' < '.join(accuracy_order)}."
    )
  return out


def write_csv(path: str, config, results: dict) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["stage", "role", "ensemble_size", "augmentation", "seed", *METRICS])
    for stage in config.stage_order:
      r = results[stage]
      if stage.startswith("teacher_"):
        writer.writerow([stage, "teacher", "", "", stage.split("_")[1], r["accuracy"], "", "", ""])
      else:
        _, m, augmentation, seed = stage.split("_")
        writer.writerow([stage, "student", m[1:], augmentation, seed[1:], *[r[k] for k in METRICS]])


def write_plot(path: str, summary: dict) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  cells = summary["cells"]
  sizes = sorted(m for m, aug in cells if aug == "baseline")
  fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
  stats = [_mean_std(100 * np.asarray(cells[(m, "baseline")]["agreement"])) for m in sizes]
  left.errorbar(sizes, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o", capsize=4)
  left.set(
      xlabel="teachers in the ensemble (m)",
      ylabel="test top-1 agreement (%)",
      title="Agreement vs ensemble size",
      xticks=sizes,
  )
  augs = [a for a in fidelity_config.AUGMENTATIONS if (sizes[0], a) in cells]
  stats = [_mean_std(100 * np.asarray(cells[(sizes[0], a)]["agreement"])) for a in augs]
  right.bar(augs, [s[0] for s in stats], yerr=[s[1] for s in stats], capsize=4, color="tab:green")
  low = min(s[0] - s[1] for s in stats)
  right.set(
      ylabel="test top-1 agreement (%)",
      title=f"Augmentation (m = {sizes[0]})",
      ylim=(max(0.0, low - 2.0), 100.0),
  )
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_report(
    config, results: dict, *, out_dir: str, name: str, command: str, variant: str
) -> dict[str, str]:
  """Writes NAME.md, NAME.csv and NAME.png into out_dir; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {ext: os.path.join(out_dir, f"{name}.{ext}") for ext in ("md", "csv", "png")}
  summary = summarise(config, results)
  write_csv(paths["csv"], config, results)
  write_plot(paths["png"], summary)
  cells = summary["cells"]
  seeds = len(next(iter(cells.values()))["accuracy"])
  lines = [
      f"# Fidelity study (Stanton et al., 2021) — `{name}`",
      "",
      "Produced by the committed code with:",
      "",
      "```bash",
      command,
      "```",
      "",
      VARIANT_NOTES.get(variant, f"Variant `{variant}`."),
      "",
      f"Teachers trained: {len(summary['teachers'])}, test accuracy "
      f"{_fmt(summary['teachers'])}% (mean ± std over teachers). Student cells: mean ± std over "
      f"{seeds} seed(s). Accuracies and agreement in %, predictive KL in nats; all on the test "
      "split, which no setting was tuned on.",
      "",
      "## Ensemble size (Table 2 structure), baseline augmentation",
      "",
      "| m | teacher acc | student acc | agreement | predictive KL |",
      "|---|---|---|---|---|",
  ]
  for m in sorted(m for m, aug in cells if aug == "baseline"):
    c = cells[(m, "baseline")]
    lines.append(
        f"| {m} | {_fmt(c['teacher_accuracy'])} | {_fmt(c['accuracy'])} | "
        f"{_fmt(c['agreement'])} | {_fmt(c['predictive_kl'], 1.0, 4)} |"
    )
  lines += [
      "",
      "Paper (Table 2), for comparison:",
      "",
      "| dataset | m | teacher acc | student acc | agreement | predictive KL |",
      "|---|---|---|---|---|---|",
  ]
  for dataset, rows in PAPER_TABLE2.items():
    for m, (t, s, a, k) in rows.items():
      lines.append(f"| {dataset} | {m} | {t} | {s} | {a} | {k} |")
  m1 = min(m for m, _ in cells)
  augs = [a for a in fidelity_config.AUGMENTATIONS if (m1, a) in cells]
  lines += [
      "",
      f"## Augmentation policy (m = {m1})",
      "",
      "| augmentation | student acc | agreement | predictive KL |",
      "|---|---|---|---|",
  ]
  for a in augs:
    c = cells[(m1, a)]
    lines.append(
        f"| {a} | {_fmt(c['accuracy'])} | {_fmt(c['agreement'])} | "
        f"{_fmt(c['predictive_kl'], 1.0, 4)} |"
    )
  lines += [
      "",
      "Paper: MixUp with the teacher relabelling the mixed input gives the best "
      "fidelity of the policies it compares (Section 5).",
      "",
      "## What this run reproduces",
      "",
  ]
  lines += [f"- {line}" for line in findings(summary)]
  lines += ["", f"![agreement]({name}.png)", "", f"Per-run numbers: [{name}.csv]({name}.csv).", ""]
  with open(paths["md"], "w") as f:
    f.write("\n".join(lines))
  return paths
