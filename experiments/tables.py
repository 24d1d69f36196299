"""Reproducing a paper table: run every stage of its config, then write its report.

One protocol for every table: `experiments/configs/TABLE.py` has `get_config(variant)` (a staged
config; everything a method needs before training — knowledge bases, PCA, caches — is its
`prepare`, run by the engine), and `experiments/reports/TABLE.py` has
`write_report(config, results, *, out_dir, name, command, variant)`, which only turns the
finished stages' results into Markdown + CSV (+ plot); a report whose `write_report` also takes
`workdir` is given it, to read what results.json does not hold (the stages' metrics.jsonl
training curves). The command line is
`experiments/reproduce.py`; this module has no flags so that tests and notebooks can call
`reproduce` directly.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from typing import Sequence

from kd_jax.train import stages

TABLES = ("fidelity", "reaugkd", "disk", "amad", "compress", "sea")


class UnknownTableError(ValueError):
  pass


def load_stage_results(workdir: str, stage_names: Sequence[str]) -> dict[str, dict]:
  """{stage: its results.json}; a stage that has not finished is an error naming it."""
  results = {}
  for stage in stage_names:
    path = os.path.join(workdir, stage, "results.json")
    if not os.path.exists(path):
      raise FileNotFoundError(
          f"{path} is missing: stage {stage!r} has not finished; rerun the "
          "reproduce command (it resumes) before writing the report."
      )
    with open(path) as f:
      results[stage] = json.load(f)
  return results


def reproduce(table: str, variant: str, workdir: str, out_dir: str) -> dict[str, str]:
  """Runs (or resumes) TABLE's VARIANT in workdir and writes TABLE_VARIANT.{md,csv,...}."""
  if table not in TABLES:
    raise UnknownTableError(f"Unknown table {table!r}; known: {', '.join(TABLES)}.")
  report = importlib.import_module(f"experiments.reports.{table}")
  config = importlib.import_module(f"experiments.configs.{table}").get_config(variant)
  command = f"python -m experiments.reproduce {table} --variant={variant}"
  stages.run(config, workdir)
  results = load_stage_results(workdir, config.stage_order)
  extra = (
      {"workdir": workdir} if "workdir" in inspect.signature(report.write_report).parameters else {}
  )
  return report.write_report(
      config,
      results,
      out_dir=out_dir,
      name=f"{table}_{variant}",
      command=command,
      variant=variant,
      **extra,
  )
