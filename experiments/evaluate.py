"""Evaluate a finished run (or every stage of a staged run) on any split of its dataset.

  python -m experiments.evaluate --workdir=/tmp/text_kd/student_kd --split=validation
  python -m experiments.evaluate --workdir=/tmp/text_kd --split=test     # every stage

Prints one JSON object per run — accuracy and, for runs with teachers, top-1 agreement,
predictive KL and the teacher's accuracy — and writes it to WORKDIR/evaluations/<split>.json.
Nothing is trained or changed otherwise. See `kd_jax.predict.evaluate`.
"""

from __future__ import annotations

import json
import os
import re

from absl import app
from absl import flags
from absl import logging

from kd_jax import predict

_WORKDIR = flags.DEFINE_string("workdir", None, "A run's workdir, or a staged run's.")
_SPLIT = flags.DEFINE_string(
    "split", None, "A split of the run's dataset, e.g. validation, " "test, train[:10%]."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Eval batch size (default: the run's).")
flags.mark_flags_as_required(["workdir", "split"])


def runs(workdir: str) -> list[str]:
  """`workdir` itself when it holds a run, else its stages (subdirectories with a config.json),
  in the order they were trained."""
  if os.path.exists(os.path.join(workdir, "config.json")):
    return [workdir]
  stages = [
      os.path.join(workdir, d)
      for d in sorted(os.listdir(workdir))
      if os.path.exists(os.path.join(workdir, d, "config.json"))
  ]
  if not stages:
    raise FileNotFoundError(
        f"{workdir} holds no finished run (no config.json in it or in its " "subdirectories)."
    )
  return sorted(stages, key=lambda d: os.path.getmtime(os.path.join(d, "config.json")))


def evaluate_and_save(workdir: str, split: str, batch_size: int | None = None) -> dict:
  result = predict.evaluate(workdir, split, batch_size=batch_size)
  directory = os.path.join(workdir, "evaluations")
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, re.sub(r"[^\w.%-]+", "_", split) + ".json"), "w") as f:
    json.dump(result, f, indent=2)
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  for run in runs(_WORKDIR.value):
    result = evaluate_and_save(run, _SPLIT.value, _BATCH_SIZE.value)
    print(json.dumps({"run": run, **result}), flush=True)


if __name__ == "__main__":
  app.run(main)
