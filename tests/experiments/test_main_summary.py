"""The end-of-run table of `experiments.main` for a single run: which evaluators become rows
(those with accuracy / agreement / predictive KL), their split, and "-" for a missing metric.
The staged table is checked on a real run in test_readme_own_data.py."""

import ml_collections

from experiments import run_summary
from tests.train import helpers


def test_single_run_table_rows_splits_and_missing_metrics():
  config = helpers.tiny_config(total_steps=4)
  config.validation_split = "train[:64]"
  config.evals = ml_collections.ConfigDict(
      {
          "val": {"kind": "metrics", "split": "train[:64]"},
          "probe": {"kind": "linear_probe", "split": "test", "train_split": "train"},
          "nn": {"kind": "nearest_neighbour", "split": "test", "train_split": "train"},
      }
  )
  results = {
      "accuracy": 0.5,
      "evals": {
          "eval": {"accuracy": 0.5, "agreement": 0.25, "predictive_kl": 0.125},
          "val": {"accuracy": 0.75},
          "probe": {"accuracy": 0.625},
          "nn": {"recall_at_1": 0.5},  # no column of the table: no row
      },
  }
  lines = run_summary.summary(config, results, "/runs/x").splitlines()
  assert [line.split() for line in lines[:-1]] == [
      ["stage", "split", "accuracy", "agreement", "pred.", "KL"],
      ["run", "test", "(probe)", "62.5%", "-", "-"],
      ["run", "train[:64]", "75.0%", "-", "-"],
      ["run", "test", "50.0%", "25.0%", "0.1250"],
  ]
  assert lines[-1] == "results: /runs/x/results.json"
