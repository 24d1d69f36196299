"""Reproducing a paper table: run every stage of its config, then write its report.

The command line is `experiments/reproduce.py`; this module has no flags so that tests and
notebooks can call `reproduce` directly.
"""

from __future__ import annotations

import importlib

from kd_jax.train import stages

TABLES = ("fidelity", "reaugkd")
VARIANT_NOTES = {
    ("fidelity", "cpu"): (
        "Variant `cpu`: Fashion-MNIST (real data: 60 000 train / 10 000 test), PreAct ResNet-8 "
        "teachers with 16/32/64 filters (500 SGD steps of 128, lr 0.1 cosine, wd 1e-4, "
        "pad-crop-flip), PreAct ResNet-8 students with 8/16/32 filters (300 SGD Nesterov steps "
        "of 128, lr 0.05 → 1e-6 cosine), τ = 4, α = 0; Gaussian noise σ = 0.1 on [0, 1] pixels; "
        "MixUp λ ~ U[0, 1]. Chosen to fit one 2-core CPU session: about an epoch each, so absolute "
        "accuracies are below converged values and effects are small."),
    ("fidelity", "smoke"): "Variant `smoke`: a few steps on MNIST-5k, for CI only; numbers are "
                           "not meaningful.",
    ("fidelity", "paper"): "Variant `paper`: CIFAR-100, PreAct ResNet-56, the paper's schedule.",
}


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
                             command=command, variant_note=VARIANT_NOTES.get((table, variant), ""))
