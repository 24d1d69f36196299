"""The table of a finished text_kd run (experiments/configs/text_kd.py), with its measured time.

  python -m experiments.reports.text_kd --workdir=/tmp/text_kd [--out=experiments/results/X.md]

Rows: the teacher, the distilled student and the labels-only student; columns: accuracy on the
validation split (evaluator "validation") and on the eval split, agreement and predictive KL
with the teacher on the eval split. The wall time runs from the first stage's config.json to
the last stage's results.json (so it includes data preparation and compilation).
"""

from __future__ import annotations

import json
import os

from absl import app
from absl import flags

STAGES = (
    ("teacher", "teacher (fine-tuned)"),
    ("student_kd", "student, distilled"),
    ("student_ce", "student, labels only"),
)


def _load(workdir: str, stage: str, name: str) -> dict:
  with open(os.path.join(workdir, stage, name)) as f:
    return json.load(f)


def report(workdir: str) -> str:
  """Markdown: settings, minutes, and one row per stage."""
  config = _load(workdir, "teacher", "config.json")
  start = os.path.getmtime(os.path.join(workdir, STAGES[0][0], "config.json"))
  end = max(os.path.getmtime(os.path.join(workdir, s, "results.json")) for s, _ in STAGES)
  students = _load(workdir, "student_kd", "config.json")
  lines = [
      f"# text_kd on `{config['dataset']}`",
      "",
      "Made by `python -m experiments.main --config=experiments/configs/text_kd.py` (then "
      "`python -m experiments.reports.text_kd`): "
      f"{(end - start) / 60:.1f} minutes from the first stage's start to the last stage's "
      f"results, on {os.cpu_count()} CPU cores. Splits: train `{config['train_split']}`, "
      f"validation `{config['validation_split']}`, eval `{config['eval_split']}`; "
      f"student {students['model_kwargs']} ({students['total_steps']} steps), teacher "
      f"{config['model_kwargs']} ({config['total_steps']} steps).",
      "",
      f"| model | val accuracy | {config['eval_split']} accuracy | agreement | " "predictive KL |",
      "|---|---|---|---|---|",
  ]
  for stage, name in STAGES:
    result = _load(workdir, stage, "results.json")
    validation = result.get("evals", {}).get("validation", {})
    cell = lambda value, percent=True: (
        "—" if value is None else f"{100 * value:.2f}%" if percent else f"{value:.4f}"
    )
    lines.append(
        f"| {name} | {cell(validation.get('accuracy'))} | {cell(result['accuracy'])} | "
        f"{cell(result.get('agreement'))} | {cell(result.get('predictive_kl'), False)} |"
    )
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  text = report(flags.FLAGS.workdir)
  print(text)
  if flags.FLAGS.out:
    with open(flags.FLAGS.out, "w") as f:
      f.write(text)


if __name__ == "__main__":
  # Flags only when run as a command: tests import this module beside other commands.
  flags.DEFINE_string("workdir", None, "The text_kd run's workdir.")
  flags.DEFINE_string("out", None, "Also write the Markdown here.")
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
