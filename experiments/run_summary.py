"""The table `experiments.main` prints at the end of a run (kept apart from main's flags, so that
tests and other entry points import it without defining them)."""

from __future__ import annotations

import os

from kd_jax.train import config as config_lib
from kd_jax.train import config_validation
from kd_jax.train import staged_config

# The columns of the end-of-run table: (results key, heading, format).
_COLUMNS = (
    ("accuracy", "accuracy", "{:.1%}"),
    ("agreement", "agreement", "{:.1%}"),
    ("predictive_kl", "pred. KL", "{:.4f}"),
)


def summary(config, results: dict, workdir: str) -> str:
  """The end-of-run table: one row per stage and evaluated split, then where results.json is.

  A row is an evaluator whose metrics include accuracy, agreement or predictive KL (a method's
  other numbers stay in results.json); one that is not the per-example `metrics` kind is named
  beside its split. A metric a stage does not have (agreement without a teacher) shows "-".
  """
  if staged_config.is_staged(config):
    runs = staged_config.validate_stages(config, resolve=False)
  else:
    runs = [("run", config_validation.validate(config))]
  table = [("stage", "split", *(heading for _, heading, _ in _COLUMNS))]
  for name, run_config in runs:
    stage_results = results[name] if staged_config.is_staged(config) else results
    evals = stage_results.get("evals") or {"eval": stage_results}
    # The "eval" evaluator (eval_split, the reported number) last: validation rows come first.
    specs = sorted(config_lib.evaluation_specs(run_config), key=lambda spec: spec[0] == "eval")
    for evaluator, spec in specs:
      metrics = evals.get(evaluator, {})
      if not any(key in metrics for key, _, _ in _COLUMNS):
        continue
      split = spec["split"] + ("" if spec["kind"] == "metrics" else f" ({evaluator})")
      cells = [fmt.format(metrics[key]) if key in metrics else "-" for key, _, fmt in _COLUMNS]
      table.append((name, split, *cells))
  widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
  lines = [
      "  ".join(
          cell.ljust(width) if i < 2 else cell.rjust(width)
          for i, (cell, width) in enumerate(zip(row, widths))
      ).rstrip()
      for row in table
  ]
  return "\n".join([*lines, f"results: {os.path.join(workdir, 'results.json')}"])
