"""Reproduce a paper table with one command: run every stage of its config, then write the report.

  python -m experiments.reproduce fidelity --variant=cpu [--workdir=DIR] [--out_dir=DIR]

TABLE names a config in experiments/configs/ that has a report in experiments/reports/. The
stages run in WORKDIR (default /tmp/kd_jax/TABLE_VARIANT); rerunning the same command resumes
an interrupted run from its checkpoints, and finished stages are only re-evaluated. The report
(Markdown + CSV + plot) goes to experiments/results/TABLE_VARIANT.* with this command at its top.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
from absl import logging

from experiments import tables

_VARIANT = flags.DEFINE_string("variant", "cpu", "Config variant, e.g. cpu, smoke or paper.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the stages run (default /tmp/kd_jax/...).")
_OUT_DIR = flags.DEFINE_string("out_dir", "experiments/results", "Where the report is written.")


def main(argv):
  if len(argv) != 2:
    raise app.UsageError(
        "Usage: python -m experiments.reproduce TABLE --variant=VARIANT "
        f"(TABLE one of {', '.join(tables.TABLES)})."
    )
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  table = argv[1]
  workdir = _WORKDIR.value or os.path.join("/tmp/kd_jax", f"{table}_{_VARIANT.value}")
  try:
    paths = tables.reproduce(table, _VARIANT.value, workdir, _OUT_DIR.value)
  except tables.UnknownTableError as error:
    raise app.UsageError(str(error)) from error
  with open(paths["md"]) as f:
    print(f.read())
  print("Written: " + ", ".join(paths.values()))


if __name__ == "__main__":
  app.run(main)
