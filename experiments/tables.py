"""Reproducing a paper table: run every stage of its config, then write its report.

The command line is `experiments/reproduce.py`; this module has no flags so that tests and
notebooks can call `reproduce` directly.
"""

from __future__ import annotations

import importlib

from kd_jax.train import stages

TABLES = ("fidelity", "reaugkd")


class UnknownTableError(ValueError):
  pass


def reproduce(table: str, variant: str, workdir: str, out_dir: str) -> dict[str, str]:
  """Runs (or resumes) TABLE's VARIANT in workdir and writes TABLE_VARIANT.{md,csv,png}."""
  if table not in TABLES:
    raise UnknownTableError(f"Unknown table {table!r}; known: {', '.join(TABLES)}.")
  report = importlib.import_module(f"experiments.reports.{table}")
  command = f"python -m experiments.reproduce {table} --variant={variant}"
  if hasattr(report, "reproduce"):
    # Tables with work between stages (ReAugKD builds its knowledge base after the teacher)
    # drive their own stages.
    return report.reproduce(variant, workdir, out_dir, command=command)
  config = importlib.import_module(f"experiments.configs.{table}").get_config(variant)
  stages.run(config, workdir)
  results = report.load_stage_results(workdir, config.stage_order)
  return report.write_report(config, results, out_dir=out_dir, name=f"{table}_{variant}",
                             command=command,
                             variant_note=report.VARIANT_NOTES.get(variant, ""))
