"""The DiSK table end to end at smoke size, on real MNIST digits with DiSK's ResNet10 family.

One generic path (`experiments.tables.reproduce`): teacher → CE checkpoints → CE continued / KD /
FitNets / AT / DiSK started from them (`init_from`), each evaluated on validation per round with
the best round (round 0 included) kept, tuned methods' seed-0 candidates compared on validation
and the winner's method given to the next seed (`choices`) → Markdown + CSV + plot.
"""

import csv
import json
import os

import numpy as np
import pytest

from experiments import tables
from experiments.configs import disk as table
from experiments.reports import disk as report
from tests.notebooks import runner

CONTINUED = ("cecont", "kd", "fitnets", "at", "disk")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("disk_work"))
  out_dir = str(tmp_path_factory.mktemp("disk_out"))
  paths = tables.reproduce("disk", "smoke", workdir, out_dir)
  results = tables.load_stage_results(workdir, table.get_config("smoke").stage_order)
  return workdir, paths, results


def _json(*parts):
  with open(os.path.join(*parts)) as f:
    return json.load(f)


def _continued_stages(student):
  s = table.settings("smoke")
  for method in CONTINUED:
    if method == "cecont":
      yield method, s["seeds"], [table.seed_stage(student, method, seed) for seed in s["seeds"]]
      continue
    _, values = table.grid("smoke", method)
    later = list(s["seeds"][1:])
    names = [table.candidate_stage(student, method, v) for v in values]
    names += [table.seed_stage(student, method, seed) for seed in later]
    yield method, [s["seeds"][0]] * len(values) + later, names


def test_every_row_starts_from_its_ce_checkpoint_and_keeps_the_best_round(smoke_run):
  workdir, _, results = smoke_run
  s = table.settings("smoke")
  spe = table.steps_per_epoch(s)
  for student in s["students"]:
    for method, seeds, stages in _continued_stages(student):
      assert len(seeds) == len(stages)
      for seed, stage in zip(seeds, stages):
        result, ce = results[stage], results[table.ce_stage(student, seed)]
        assert result["init_from"]["workdir"] == os.path.join(
            workdir, table.ce_stage(student, seed)
        )
        assert result["init_from"]["step"] == s["ce_epochs"] * spe
        history = result["history"]["validation"]
        total, first, every = table.round_steps(s, method)
        # Round 0 (before the first round; for DiSK after the gate warm-up, which leaves the
        # student untouched), every round end, and the last step.
        assert [r["step"] for r in history] == [first + k * every for k in range(s["rounds"])] + [
            total
        ], stage
        # Round 0 is the CE checkpoint: the same validation accuracy as the CE run's end.
        assert history[0]["accuracy"] == ce["evals"]["validation"]["accuracy"], stage
        accuracies = [r["accuracy"] for r in history]
        best = history[int(np.argmax(accuracies))]  # the first maximum
        assert result["model_selection"]["step"] == best["step"], stage
        assert result["evals"]["validation"]["accuracy"] == best["accuracy"], stage
        # Same student updates for every row: the baselines' steps, DiSK's student phases.
        student_updates = s["rounds"] * s["student_epochs"] * spe
        assert total == student_updates or method == "disk"


def test_later_seeds_take_the_candidate_best_on_validation(smoke_run):
  workdir, _, results = smoke_run
  s = table.settings("smoke")
  for student in s["students"]:
    for method in table.TUNED:
      stage = table.seed_stage(student, method, 1)
      choice = _json(workdir, stage, "choice.json")
      scores = {c: results[c]["evals"]["validation"]["accuracy"] for c in choice["candidates"]}
      assert choice["scores"] == pytest.approx(scores)
      best = max(scores.values())
      assert choice["chosen"] == next(c for c in choice["candidates"] if scores[c] == best)
      ran_with = _json(workdir, stage, "config.json")["method"]
      assert ran_with == _json(workdir, choice["chosen"], "config.json")["method"]
      assert report.chosen_candidate("smoke", student, method, results)[0] == choice["chosen"]


def test_disk_stages_alternate_and_record_the_gate_per_round(smoke_run):
  workdir, _, results = smoke_run
  s = table.settings("smoke")
  config = table.get_config("smoke")
  for stage in config.stage_order:
    if "_disk_" not in stage:
      continue
    result = results[stage]
    assert 0 < result["gate"] < 1
    assert config.stages[stage].total_steps == table.round_steps(s, "disk")[0]
    phases = set()
    with open(os.path.join(workdir, stage, "metrics.jsonl")) as f:
      for line in f:
        record = json.loads(line)
        if record.get("split") == "train" and "gate_phase" in record:
          phases.add(record["gate_phase"])
    assert phases == {0.0, 1.0}, stage  # both gate and student phases were logged
    rows = result["history"]["test_rounds"]
    assert len(rows) == s["rounds"] + 1
    for row in rows:
      assert 0 <= row["gate_wrong"] <= row["gate"] < 1 and row["delta"] > 0
    rounds = report.gate_rounds("smoke", [stage], results)
    assert [r["round"] for r in rounds] == list(range(s["rounds"] + 1))
    row, first = rounds[0], rows[0]
    assert row["gate_wrong"] == pytest.approx(first["gate_wrong"] / (1 - first["accuracy"]))


def test_report_has_every_row_and_states_the_claims(smoke_run):
  _, paths, _ = smoke_run
  with open(paths["md"]) as f:
    text = f.read()
  for label in report.LABELS.values():
    assert f"| {label} |" in text
  assert "The paper's central claim" in text and "DiSK − KD =" in text
  assert "CE continued =" in text and "teacher ahead by" in text
  assert "| round | test acc. | g on wrong | g on right | budget term | δ |" in text
  with open(paths["csv"]) as f:
    rows = list(csv.DictReader(f))
  s = table.settings("smoke")
  assert len(rows) == len(s["students"]) * len(table.METHODS) * len(s["seeds"])
  assert {r["chosen_round"] for r in rows if r["method"] == "ce"} == {""}  # no rounds: the start
  assert os.path.getsize(paths["png"]) > 0


@pytest.mark.slow
def test_notebook_runs_on_the_smoke_stages(smoke_run, tmp_path, monkeypatch):
  """notebooks/disk.ipynb at its small size on a copy of this smoke run's stages: every cell runs,
  and the stages it shares with the table are not trained again."""
  workdir = smoke_run[0]
  runner.copy_stages(workdir, str(tmp_path / "disk_small"))
  output = runner.execute("disk.ipynb", tmp_path, monkeypatch)
  runner.assert_reused(output)
