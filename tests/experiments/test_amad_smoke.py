"""The AMAD table end to end at smoke size: real Rotten Tomatoes text, tiny BERTs (teacher 4
heads, students 2 and 4), every kind of row, weights chosen on validation, the soft-alignment
evaluator, and the report computed from the stages' results."""

import csv
import json
import os

import numpy as np
import pytest

from experiments import tables
from experiments.configs import amad as table
from experiments.reports import amad as report
from kd_jax.train import staged_config
from tests.notebooks import runner


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("amad_work"))
  out_dir = str(tmp_path_factory.mktemp("amad_out"))
  paths = tables.reproduce("amad", "smoke", workdir, out_dir)
  results = tables.load_stage_results(workdir, table.get_config("smoke").stage_order)
  return workdir, paths, results


def _json(*parts):
  with open(os.path.join(*parts)) as f:
    return json.load(f)


def test_choices_take_the_best_validation_candidate_across_head_counts(smoke_run):
  workdir, _, results = smoke_run
  for row in ("head_pool", "amad_kl", "one_to_one"):
    tuner = table.tuning_heads("smoke", "rt", row)
    tried = [
        table.candidate_stage("rt", tuner, row, w, m) for w, m in table.candidates("smoke", row)
    ]
    scores = [results[c]["evals"]["validation"]["accuracy"] for c in tried]
    best = tried[int(np.argmax(scores))]  # ties: the first, as kd_jax.train.choices
    for heads in (2, 4):
      names, _ = table.cell_stages("smoke", "rt", heads, row)
      if row not in table.rows("smoke", heads):
        continue
      for name in names:
        choice = _json(workdir, name, "choice.json")
        assert choice["chosen"] == best
        assert (
            _json(workdir, name, "config.json")["method"]
            == _json(workdir, best, "config.json")["method"]
        )
  # One-to-one only where the heads match, head-pool only where they divide and differ.
  assert "one_to_one" not in table.rows("smoke", 2) and "head_pool" not in table.rows("smoke", 4)


def test_text_batches_keep_the_attention_mask():
  config = table.get_config("smoke").stages["rt_h2_amad_kl_s1"]
  assert "attention_mask" in dict(config.train_transforms[-1])["keys"]


def test_soft_alignment_rows_are_distributions_over_student_heads(smoke_run):
  _, _, results = smoke_run
  for row in table.ALIGNMENT_ROWS:
    evals = results[table.seed_stage("rt", 2, row, table.ALIGNMENT_SEED)]["evals"]["alignment"]
    a = report.alignment_matrices(evals)
    assert a.shape == (1, 4, 2)  # one mapped layer, 4 teacher heads, 2 student heads
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)


def test_report_cells_and_csv_come_from_the_results(smoke_run):
  _, paths, results = smoke_run
  text = open(paths["md"]).read()
  assert "python -m experiments.reproduce amad --variant=smoke" in text
  assert "| KD + head-pool |" in text and "= one-to-one" in text
  assert "Does AMAD beat one-to-one attention KD here, beyond the seed spread?" in text
  assert "## Soft alignment a_ij (Eq. 2) of trained students" in text
  with open(paths["csv"]) as f:
    rows = list(csv.reader(f))
  assert rows[0][0].startswith("# command: python -m experiments.reproduce amad")
  by_stage = {r[5]: float(r[7]) for r in rows[2:]}
  assert len(by_stage) == 2 * sum(len(table.rows("smoke", h)) for h in (2, 4))
  for stage, accuracy in by_stage.items():
    assert accuracy == pytest.approx(100 * results[stage]["accuracy"], abs=0.01)
  ce = report.cells("smoke", results)["rt"][2]["ce"]["test"]
  mean, std = np.mean(ce), np.std(ce, ddof=1)
  assert f"| CE | {mean:.2f} ± {std:.2f} |" in text
  assert os.path.getsize(paths["png"]) > 1000


def test_compare_counts_only_differences_beyond_twice_the_standard_error():
  assert report.compare([80, 81, 82], [70, 71, 72])[2] == "beats"
  assert report.compare([70, 71, 72], [80, 81, 82])[2] == "loses"
  assert report.compare([70, 75, 80], [71, 76, 79])[2] == "within"


def test_every_variant_validates():
  stages = dict(staged_config.validate_stages(table.get_config("cpu"), resolve=False))
  assert stages["rt_teacher"].model_kwargs.init_from == "minilm"
  assert stages["rt_h4_amad_learnable_s2"].model_kwargs.num_heads == 4
  assert stages["fmnist_h6_head_pool_s0"].method.kind == "head_pool"
  assert "rt_h12_head_pool_s0" not in stages and "fmnist_h4_one_to_one_s0" not in stages
  for row in table.ROWS:
    for heads in (4, 12):
      assert any(name.startswith(f"rt_h{heads}_{row}") for name in stages) == (
          row in table.rows("cpu", heads)
      )
  paper = dict(staged_config.validate_stages(table.get_config("paper"), resolve=False))
  assert paper["mnli_teacher"].dataset == "glue/mnli"
  assert "cifar100_h4_amad_kl_w0p003_last_s0" in paper  # the layer map is chosen too
  with pytest.raises(ValueError, match="variants"):
    table.get_config("gpu")


@pytest.mark.slow
def test_notebook_runs_on_the_smoke_stages(smoke_run, tmp_path, monkeypatch):
  """notebooks/amad.ipynb at its small size on a copy of this smoke run's stages: every cell runs,
  and the stages it shares with the table are not trained again (the two students it runs with
  other settings are)."""
  workdir = smoke_run[0]
  heads = min(table.settings("smoke")["tasks"]["rt"]["heads"])
  # The notebook runs these two with one fixed weight and the alignment evaluator: they train.
  changed = [
      table.seed_stage("rt", heads, row, table.ALIGNMENT_SEED) for row in ("head_pool", "amad_kl")
  ]
  runner.copy_stages(workdir, str(tmp_path / "amad_small"), leave_out=changed)
  output = runner.execute("amad.ipynb", tmp_path, monkeypatch)
  runner.assert_reused(output, trained=changed)
