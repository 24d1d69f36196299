"""The fidelity table end to end at smoke size: stages → report (Markdown, CSV, plot)."""

import csv
import os

import pytest

from experiments import tables
from experiments.configs import fidelity as fidelity_config
from experiments.reports import fidelity as report


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("fidelity_work"))
  out_dir = str(tmp_path_factory.mktemp("fidelity_out"))
  paths = tables.reproduce("fidelity", "smoke", workdir, out_dir)
  return workdir, paths


def test_every_stage_ran_and_students_distilled_from_their_ensembles(smoke_run):
  workdir, _ = smoke_run
  config = fidelity_config.get_config("smoke")
  results = tables.load_stage_results(workdir, config.stage_order)
  for stage, result in results.items():
    assert result["step"] == config.stages[stage].total_steps
    assert result["accuracy"] == result["evals"]["eval"]["accuracy"]
    if stage.startswith("student_"):
      assert {"agreement", "predictive_kl", "teacher_accuracy"} <= set(result)
      teachers = config.stages[stage].teachers
      if len(teachers) == 1:  # the teacher's accuracy on the same test split, as it reported it
        assert result["teacher_accuracy"] == pytest.approx(
            results[teachers[0].workdir]["accuracy"], abs=1e-6
        )
  # The m = 2 student is evaluated against the 2-teacher ensemble, whose accuracy is its own
  # number, not either member's (up to a tie).
  assert len(config.stages["student_m2_baseline_s0"].teachers) == 2


def test_report_files_are_written_from_the_stage_results(smoke_run):
  workdir, paths = smoke_run
  config = fidelity_config.get_config("smoke")
  results = tables.load_stage_results(workdir, config.stage_order)
  with open(paths["csv"]) as f:
    rows = list(csv.DictReader(f))
  assert [r["stage"] for r in rows] == list(config.stage_order)
  for row in rows:
    if row["role"] == "student":
      assert float(row["agreement"]) == pytest.approx(results[row["stage"]]["agreement"])
  text = open(paths["md"]).read()
  assert "python -m experiments.reproduce fidelity --variant=smoke" in text
  assert "## What this run reproduces" in text and "Paper (Table 2)" in text
  assert os.path.getsize(paths["png"]) > 1000


def test_findings_are_computed_from_numbers():
  cells = {
      (1, "baseline"): {
          "agreement": [0.80, 0.82],
          "predictive_kl": [0.3, 0.3],
          "accuracy": [0.8, 0.8],
          "teacher_accuracy": [0.9, 0.9],
      },
      (3, "baseline"): {
          "agreement": [0.85, 0.86],
          "predictive_kl": [0.2, 0.2],
          "accuracy": [0.8, 0.8],
          "teacher_accuracy": [0.9, 0.9],
      },
      (1, "mixup"): {
          "agreement": [0.70, 0.70],
          "predictive_kl": [0.3, 0.3],
          "accuracy": [0.9, 0.9],
          "teacher_accuracy": [0.9, 0.9],
      },
  }
  lines = report.findings({"cells": cells, "teachers": [0.9]})
  assert lines[0].startswith("Reproduced: agreement rises")
  assert lines[1].startswith("Reproduced: predictive KL falls")
  assert lines[3].startswith("Not reproduced: MixUp gives the highest")
  cells[(3, "baseline")]["agreement"] = [0.5, 0.5]
  assert report.findings({"cells": cells, "teachers": [0.9]})[0].startswith("Not reproduced")


def test_unknown_variant_and_table_are_refused():
  with pytest.raises(ValueError, match="variants"):
    fidelity_config.get_config("gpu")
  with pytest.raises(tables.UnknownTableError, match="Unknown table"):
    tables.reproduce("no_such_table", "cpu", "/tmp/x", "/tmp/y")
