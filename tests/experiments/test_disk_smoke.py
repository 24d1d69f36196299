"""The DiSK table end to end at smoke size, on real MNIST digits with DiSK's ResNet10 family.

One generic path (`experiments.tables.reproduce`): teacher → CE / KD / FitNets / AT / DiSK
students, each tuned method's seed-0 candidates compared on validation and the winner's method
given to the next seed (`choices`) → Markdown + CSV + plot.
"""

import csv
import json
import os

import pytest

from experiments import tables
from experiments.configs import disk as table
from experiments.reports import disk as report


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("disk_work"))
  out_dir = str(tmp_path_factory.mktemp("disk_out"))
  paths = tables.reproduce("disk", "smoke", workdir, out_dir)
  return workdir, paths


def _json(*parts):
  with open(os.path.join(*parts)) as f:
    return json.load(f)


def test_later_seeds_take_the_candidate_best_on_validation(smoke_run):
  workdir, _ = smoke_run
  s = table.settings("smoke")
  for student in s["students"]:
    for method in ("kd", "fitnets", "at", "disk"):
      stage = table.seed_stage(student, method, 1)
      choice = _json(workdir, stage, "choice.json")
      scores = {
          c: _json(workdir, c, "results.json")["evals"]["validation"]["accuracy"]
          for c in choice["candidates"]
      }
      assert choice["scores"] == pytest.approx(scores)
      best = max(scores.values())
      assert choice["chosen"] == next(c for c in choice["candidates"] if scores[c] == best)
      ran_with = _json(workdir, stage, "config.json")["method"]
      assert ran_with == _json(workdir, choice["chosen"], "config.json")["method"]
      # The report's seed 0 is the same candidate.
      results = tables.load_stage_results(workdir, table.get_config("smoke").stage_order)
      assert report.chosen_candidate("smoke", student, method, results)[0] == choice["chosen"]


def test_disk_stages_alternate_and_report_the_gate(smoke_run):
  workdir, _ = smoke_run
  s = table.settings("smoke")
  config = table.get_config("smoke")
  for stage in config.stage_order:
    if "_disk_" not in stage:
      continue
    result = _json(workdir, stage, "results.json")
    assert 0 < result["gate"] < 1
    assert config.stages[stage].total_steps == table.disk_total_steps(s, 2)  # 64 / 32 per epoch
    phases = set()
    with open(os.path.join(workdir, stage, "metrics.jsonl")) as f:
      for line in f:
        record = json.loads(line)
        if record.get("split") == "train" and "gate_phase" in record:
          phases.add(record["gate_phase"])
    assert phases == {0.0, 1.0}, stage  # both gate and student phases were logged


def test_report_has_every_row_and_states_the_claims(smoke_run):
  _, paths = smoke_run
  with open(paths["md"]) as f:
    text = f.read()
  for label in report.LABELS.values():
    assert f"| {label} |" in text
  assert "The paper's central claim" in text and "DiSK − KD =" in text
  with open(paths["csv"]) as f:
    rows = list(csv.DictReader(f))
  s = table.settings("smoke")
  assert len(rows) == len(s["students"]) * len(table.METHODS) * len(s["seeds"])
  assert os.path.getsize(paths["png"]) > 0
