"""The fidelity table end to end at smoke size: teachers → pair reference → every student row
(ensembles, MixUp, noise, another distillation set, interpolated starts) → report."""

import csv
import os

import numpy as np
import pytest

from experiments import tables
from experiments.configs import fidelity as table
from experiments.reports import fidelity as report
from kd_jax import predict
from kd_jax.train import writers
from tests.notebooks import runner

SMOKE = table.settings("smoke")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("fidelity_work"))
  out_dir = str(tmp_path_factory.mktemp("fidelity_out"))
  paths = tables.reproduce("fidelity", "smoke", workdir, out_dir)
  config = table.get_config("smoke")
  return workdir, paths, config, tables.load_stage_results(workdir, config.stage_order)


def test_every_row_ran_with_its_teachers_data_and_augmentation(smoke_run):
  workdir, _, config, results = smoke_run
  rows = table.student_rows(SMOKE)
  assert rows == ["m1", "m2", "mixup", "noise", "data", "init_0p5", "init_0p9"]
  for name in config.stage_order:
    assert results[name]["step"] == config.stages[name].total_steps
    assert {"accuracy"} <= set(results[name]["evals"]["train_split"])
  for row in rows:
    name = table.stage(row, 0)
    stage, result = config.stages[name], results[name]
    assert {"agreement", "predictive_kl", "teacher_accuracy"} <= set(result)
    assert {"agreement", "predictive_kl"} <= set(result["evals"]["train_split"])
    members = [t.workdir for t in stage.teachers]
    assert members == (["teacher_0", "teacher_1"] if row == "m2" else ["teacher_0"])
    if row != "m2":  # one teacher: its accuracy as the teacher's own run measured it
      assert result["teacher_accuracy"] == pytest.approx(results["teacher_0"]["accuracy"])
    assert stage.train_split == (SMOKE["other_data"][0] if row == "data" else SMOKE["train"][0])
    assert stage.evals.train_split.split == SMOKE["train"][0]
    assert bool(stage.batch_transforms) == (row == "mixup")
    assert any("GaussianNoise" in str(t) for t in stage.train_transforms) == (row == "noise")


def test_train_evaluator_measures_the_teachers_train_set(smoke_run):
  """The evaluator "train_split" equals an independent pass over the train split (kd_jax.predict)."""
  workdir, _, _, results = smoke_run
  for name in ("teacher_1", "m2_s0"):
    again = predict.evaluate(os.path.join(workdir, name), SMOKE["train"][0])
    assert ("agreement" in again) == name.startswith("m2")
    for key in ("accuracy", "agreement", "predictive_kl", "teacher_accuracy"):
      if key not in again:  # a teacher has no agreement with itself
        continue
      value = again[key]
      assert results[name]["evals"]["train_split"][key] == pytest.approx(value, abs=1e-5), (
          name,
          key,
      )


def test_pair_evaluates_one_teacher_against_another_without_training(smoke_run):
  _, _, config, results = smoke_run
  pair = results[table.pair_stage(0)]
  assert config.stages[table.pair_stage(0)].total_steps == 0
  assert pair["init_from"]["workdir"].endswith("teacher_1")
  assert pair["accuracy"] == pytest.approx(results["teacher_1"]["accuracy"])
  assert pair["teacher_accuracy"] == pytest.approx(results["teacher_0"]["accuracy"])
  train = pair["evals"]["train_split"]
  assert train["accuracy"] == pytest.approx(
      results["teacher_1"]["evals"]["train_split"]["accuracy"]
  )
  assert train["teacher_accuracy"] == pytest.approx(
      results["teacher_0"]["evals"]["train_split"]["accuracy"]
  )


def test_init_rows_start_between_the_teacher_and_a_random_init(smoke_run):
  workdir, _, _, results = smoke_run
  first_loss = {}
  for row, weight in [("m1", None)] + [(table.interpolation_row(w), w) for w in (0.5, 0.9)]:
    name = table.stage(row, 0)
    record = results[name].get("init_from")
    if weight is None:
      assert record is None
    else:
      assert record["interpolate_weight"] == weight
      assert record["workdir"].endswith("teacher_0")
    # Step 1 logs the loss of the starting weights on the same first batch for every row.
    metrics = writers.read_metrics(os.path.join(workdir, name))
    rows = [r for r in metrics if r["split"] == "train" and "loss" in r]
    first_loss[row] = rows[0]["loss"]
  # Both interpolated starts are closer to the teacher than the random one. (Not ordered among
  # themselves: the step's loss is in train mode, batch statistics instead of the teacher's.)
  assert max(first_loss["init_0p5"], first_loss["init_0p9"]) < first_loss["m1"]


def test_report_has_every_finding_the_curves_and_the_per_run_csv(smoke_run):
  workdir, paths, config, results = smoke_run
  with open(paths["csv"]) as f:
    rows = list(csv.DictReader(f))
  assert [r["stage"] for r in rows] == [
      *(table.teacher_stage(i) for i in range(2)),
      table.pair_stage(0),
      *(table.stage(row, 0) for row in table.student_rows(SMOKE)),
  ]
  for row in rows:
    if row["role"] == "student":
      result = results[row["stage"]]
      assert float(row["agreement"]) == pytest.approx(100 * result["agreement"])
      assert float(row["train_agreement"]) == pytest.approx(
          100 * result["evals"]["train_split"]["agreement"]
      )
      assert row["fall"] != ""  # read from the stage's metrics.jsonl
  text = open(paths["md"]).read()
  assert "python -m experiments.reproduce fidelity --variant=smoke" in text
  for number in range(1, 7):
    assert f"**{number}. " in text
  assert "## Training curves" in text and "Paper (Table 2)" in text
  for key in ("png", "curves"):
    assert os.path.getsize(paths[key]) > 1000


def _runs(column_values: dict) -> list[dict]:
  seeds = len(next(iter(column_values.values())))
  return [{k: v[i] for k, v in column_values.items()} for i in range(seeds)]


def _data(agreement: dict, accuracy: dict | None = None) -> dict:
  accuracy = accuracy or {}
  rows = {}
  for row in table.student_rows(SMOKE):
    test = agreement[row]
    rows[row] = _runs(
        {
            "agreement": test,
            "train_agreement": [a + 2.0 for a in test],
            "predictive_kl": [0.1, 0.1],
            "accuracy": accuracy.get(row, [80.0, 80.1]),
        }
    )
  return {"rows": rows, "pairs": _runs({"agreement": [85.0, 86.0]})}


BASE = {
    "m1": [90.0, 90.2],
    "m2": [92.0, 92.2],
    "mixup": [93.0, 93.2],
    "noise": [88.0, 88.2],
    "data": [91.0, 91.2],
    "init_0p5": [99.5, 99.7],
    "init_0p9": [99.8, 99.9],
}


def test_findings_are_computed_from_the_numbers():
  verdicts = [v for _, v in report.findings("smoke", _data(BASE))]
  assert len(verdicts) == 6
  assert verdicts[0].startswith("Reproduced") and "+4.60 points" in verdicts[0]
  assert verdicts[1].startswith("Reproduced")
  assert verdicts[2].startswith("Reproduced for MixUp") and "Reproduced for the data" in verdicts[2]
  assert verdicts[3].startswith("Reproduced")
  assert verdicts[4].startswith("Reproduced") and "from λ = 0.5 on" in verdicts[4]
  assert verdicts[5].startswith("Not reproduced")  # equal accuracies: nothing to separate
  changed = dict(BASE, mixup=[89.0, 89.2], m2=[89.0, 89.1], m1=[99.5, 99.6], init_0p5=[95, 95.2])
  accuracy = {"m1": [70.0, 70.1], "noise": [85.0, 85.1]}
  verdicts = [v for _, v in report.findings("smoke", _data(changed, accuracy))]
  assert verdicts[0].startswith("Not reproduced")
  assert verdicts[2].startswith("Not reproduced for MixUp") and "best test agreement is m1" in (
      verdicts[2]
  )
  assert "Not reproduced for the data" in verdicts[2]
  assert verdicts[3].startswith("Not reproduced")
  assert verdicts[4].startswith("Not reproduced")  # λ = 0 is already near 100 %
  assert verdicts[5].startswith("Reproduced") and "the best accuracy noise's" in verdicts[5]
  # one row has both the best agreement and the best accuracy: said once, as such
  verdicts = [v for _, v in report.findings("smoke", _data(BASE, {"mixup": [95.0, 95.1]}))]
  assert verdicts[5].startswith(
      "Not reproduced: the best agreement and the best accuracy are both mixup's; rank"
  )


def test_plateau_fall_of_a_curve():
  steps = np.arange(1, 101)
  flat = [{"step": int(s), "split": "train", "loss": float(np.exp(-s / 5) + 0.1)} for s in steps]
  falling = [{"step": int(s), "split": "train", "loss": float(1 - s / 100 + 0.1)} for s in steps]
  evaluator_rows = [{"step": 100, "split": "train", "accuracy": 0.5}]  # evaluator "train" rows
  assert report.plateau(flat + evaluator_rows)["fall"] < report.PLATEAU_FALL
  # Windows (65, 75] and (90, 100]: means 0.395 and 0.145.
  assert report.plateau(falling)["fall"] == pytest.approx(0.25 / 0.395)
  assert report.plateau(falling)["final_loss"] == pytest.approx(0.145)
  assert report.plateau(flat[:5]) == {}


def test_unknown_variant_and_table_are_refused():
  with pytest.raises(ValueError, match="variants"):
    table.get_config("gpu")
  with pytest.raises(tables.UnknownTableError, match="Unknown table"):
    tables.reproduce("no_such_table", "cpu", "/tmp/x", "/tmp/y")


@pytest.mark.slow
def test_notebook_runs_on_the_smoke_stages(smoke_run, tmp_path, monkeypatch):
  """notebooks/fidelity.ipynb at its small size on a copy of this smoke run's stages: every cell
  runs, and the stages it shares with the table are not trained again."""
  workdir = smoke_run[0]
  runner.copy_stages(workdir, str(tmp_path / "fidelity_small" / "runs"))
  output = runner.execute("fidelity.ipynb", tmp_path, monkeypatch)
  runner.assert_reused(output)
