"""The method zoo table end to end at smoke size, on real MNIST digits with DiSK's ResNet10 family.

One generic path (`experiments.tables.reproduce`): teacher → CE / DKD / DIST / ReviewKD / OFD
students, each tuned method's seed-0 candidates compared on validation and the winner's method
given to the next seed (`choices`) → Markdown + CSV + plot with the published numbers apart; then
notebooks/zoo.ipynb on a copy of those stages.
"""

import csv
import json
import math
import os
import re

import pytest

from experiments import tables
from experiments.configs import zoo as table
from experiments.reports import zoo as report
from tests.notebooks import runner


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("zoo_work"))
  out_dir = str(tmp_path_factory.mktemp("zoo_out"))
  paths = tables.reproduce("zoo", "smoke", workdir, out_dir)
  return workdir, paths


def _json(*parts):
  with open(os.path.join(*parts)) as f:
    return json.load(f)


def _train_metrics(workdir, stage):
  with open(os.path.join(workdir, stage, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [r for r in records if r.get("split") == "train"]


def test_later_seeds_take_the_candidate_best_on_validation(smoke_run):
  workdir, _ = smoke_run
  s = table.settings("smoke")
  results = tables.load_stage_results(workdir, table.get_config("smoke").stage_order)
  for pair in s["pairs"]:
    for method in s["methods"][1:]:
      choice = _json(workdir, table.seed_stage(pair, method, 1), "choice.json")
      scores = {
          c: _json(workdir, c, "results.json")["evals"]["validation"]["accuracy"]
          for c in choice["candidates"]
      }
      assert choice["scores"] == pytest.approx(scores)
      best = max(scores.values())
      assert choice["chosen"] == next(c for c in choice["candidates"] if scores[c] == best)
      ran_with = _json(workdir, table.seed_stage(pair, method, 1), "config.json")["method"]
      assert ran_with == _json(workdir, choice["chosen"], "config.json")["method"]
      assert report.chosen_candidate("smoke", pair, method, results)[0] == choice["chosen"]


def test_zoo_stages_log_their_terms_and_scaled_warmups(smoke_run):
  workdir, _ = smoke_run
  pair = table.settings("smoke")["pairs"][0]
  terms = {"dkd": ("tckd", "nckd"), "dist": ("inter_class", "intra_class"), "reviewkd": ("review",)}
  terms["ofd"] = ("ofd",)
  for method, names in terms.items():
    records = _train_metrics(workdir, table.seed_stage(pair, method, 1))
    assert records, method
    for name in names:
      assert all(math.isfinite(r[name]) and r[name] >= 0 for r in records), (method, name)
  # The warm-up is 20/240 of the 2-epoch run: under one step of 2 per epoch, so full by the end.
  warmups = [r["dkd_warmup"] for r in _train_metrics(workdir, table.seed_stage(pair, "dkd", 1))]
  assert warmups[-1] == 1.0 and warmups[0] < 1.0
  config = _json(workdir, table.seed_stage(pair, "reviewkd", 1), "config.json")
  assert config["method"]["warmup_epochs"] == pytest.approx(2 * 20 / 240)


def test_report_has_every_row_and_keeps_published_numbers_apart(smoke_run):
  _, paths = smoke_run
  with open(paths["md"]) as f:
    text = f.read()
  s = table.settings("smoke")
  for method in s["methods"]:
    assert f"| {report.LABELS[method]} |" in text
  assert "against CE (mean difference in points)" in text
  assert "the teacher leads the CE student by" in text
  assert "Improves on CE beyond the seed spread:" in text.split("## Claims")[1]
  # Published CIFAR-100 numbers appear only in their own, labelled section for this variant, and
  # only those docs/PAPERS.md gives (KD and CRD); the other rows say so.
  ours, published = text.split("## Published CIFAR-100 numbers")
  assert "75.51" not in ours and "75.51" in published and "for reference only" in published
  assert "| DKD | not in PAPERS.md | not in PAPERS.md |" in published
  with open(paths["csv"]) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == len(s["pairs"]) * len(s["methods"]) * len(s["seeds"])
  assert os.path.getsize(paths["png"]) > 0


def test_paper_report_puts_each_published_number_beside_ours(tmp_path):
  # Synthetic results (no training): the paper variant's report layout and its published column.
  config = table.get_config("paper")
  results = {
      stage: {"accuracy": 0.5 + 0.001 * i, "evals": {"validation": {"accuracy": 0.5}}}
      for i, stage in enumerate(config.stage_order)
  }
  paths = report.write_report(
      config, results, out_dir=str(tmp_path), name="zoo_paper", command="cmd", variant="paper"
  )
  with open(paths["md"]) as f:
    lines = f.read().splitlines()
  header = next(line for line in lines if line.startswith("| method |"))
  assert header.count("| published |") == 2
  kd = next(line for line in lines if line.startswith("| KD |")).split("|")
  assert kd[3].strip() == "70.66" and kd[5].strip() == "73.33"  # docs/PAPERS.md's KD numbers
  dkd = next(line for line in lines if line.startswith("| DKD |")).split("|")
  assert dkd[3].strip() == dkd[5].strip() == "not in PAPERS.md"
  assert "[beta=2]" in dkd[2] and "[beta=8]" in dkd[4]  # the value published for each pair
  for pair in table.settings("paper")["pairs"]:
    assert set(report.PUBLISHED[pair]) == {"kd", "crd"}


def _cell(test, validation=None):
  return {"stages": [], "value": None, "test": test, "validation": validation or test}


def test_claims_follow_the_seeds():
  # Synthetic cells: KD and DKD clearly above CE, DKD above KD, CRD within KD's spread, VID below
  # CE; then a teacher barely ahead of CE, which must be flagged as a setting without room.
  pair = ("resnet10_m", "resnet10_xxs")
  row = {
      "ce": _cell([80.0, 80.2, 79.8]),
      "kd": _cell([82.0, 82.2, 81.8]),
      "dkd": _cell([84.0, 84.2, 83.8]),
      "crd": _cell([81.0, 83.0, 82.5]),
      "vid": _cell([70.0, 70.2, 69.8]),
  }
  teacher = {table.teacher_stage(pair): {"evals": {"validation": {"accuracy": 0.9}}}}
  lines = report.claims("cpu", {pair: row}, teacher)
  text = "\n".join(lines)
  assert "Distillation helps this student at all: supported: KD beats CE." in text
  assert "Improves on CE beyond the seed spread: KD, DKD, CRD (3 of 4); worse than CE: VID;" in text
  assert "Improves on KD beyond the seed spread: DKD (1 of 3); worse than KD: VID;" in text
  assert "CRD > KD (docs/PAPERS.md) is not resolved here" in text
  assert "no room" not in text
  teacher[table.teacher_stage(pair)]["evals"]["validation"]["accuracy"] = 0.805
  assert "leaves no room" in "\n".join(report.claims("cpu", {pair: row}, teacher))


@pytest.mark.slow
def test_notebook_runs_on_the_smoke_stages(smoke_run, tmp_path, monkeypatch):
  """notebooks/zoo.ipynb at its small size on a copy of this smoke run's stages: every cell runs,
  its per-method table has every method of the smoke run, and no stage is trained again."""
  workdir = smoke_run[0]
  runner.copy_stages(workdir, str(tmp_path / "zoo_small" / "runs"))
  output = runner.execute("zoo.ipynb", tmp_path, monkeypatch)
  runner.assert_reused(output)
  for method in table.settings("smoke")["methods"]:  # its line of the per-method table
    assert re.search(rf"^{report.LABELS[method]} .* ± .* ± ", output, re.M), method
  assert "DKD per example: (8,)" in output and "NST per example: (8,)" in output
