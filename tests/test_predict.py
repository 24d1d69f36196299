"""`kd_jax.predict` and `experiments.evaluate` on a finished (tiny) image run and its teacher."""

import json
import os

import ml_collections
import numpy as np
import pytest

from experiments import evaluate as evaluate_cli
from kd_jax import data
from kd_jax import predict
from kd_jax.train import stages
from tests.train import helpers


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A teacher and a distilled student, a few steps each on real MNIST digits."""
  workdir = str(tmp_path_factory.mktemp("run"))
  config = ml_collections.ConfigDict()
  config.stages = ml_collections.ConfigDict()
  config.stages.teacher = helpers.tiny_config(total_steps=8)
  student = helpers.tiny_config(
      total_steps=4, method=ml_collections.ConfigDict({"name": "vanilla_kd"})
  )
  student.teachers = (
      ml_collections.ConfigDict(
          {
              "model": "tests.train.helpers:TinyCNN",
              "workdir": "teacher",
              "model_kwargs": {"width": 8},
          }
      ),
  )
  config.stages.student = student
  config.stage_order = ("teacher", "student")
  results = stages.run(config, workdir)
  return workdir, results


def test_predict_on_new_images_matches_the_trained_model(finished):
  workdir, _ = finished
  model = predict.load(os.path.join(workdir, "student"))
  source = helpers.mnist_small("test")
  images = [source[i]["image"] for i in range(5)]
  out = model.predict(images)
  assert len(out["label"]) == 5 and np.allclose(np.sum(out["probabilities"], -1), 1, atol=1e-5)
  # 2-D images (no channel axis) are accepted too, with the same answers.
  assert model.predict([image[..., 0] for image in images])["label"] == out["label"]
  with pytest.raises(TypeError, match="list of inputs"):
    model.predict("one text")


def test_evaluate_reproduces_the_runs_own_final_metrics(finished):
  workdir, results = finished
  again = predict.evaluate(os.path.join(workdir, "student"), "test")
  for key in ("accuracy", "agreement", "predictive_kl", "teacher_accuracy"):
    assert again[key] == pytest.approx(results["student"][key], abs=1e-5), key
  assert again["count"] == 256 and again["split"] == "test"


def test_evaluate_command_covers_every_stage_and_saves(finished):
  workdir, _ = finished
  runs = evaluate_cli.runs(workdir)
  assert [os.path.basename(r) for r in runs] == ["teacher", "student"]
  result = evaluate_cli.evaluate_and_save(runs[0], "train", batch_size=128)
  assert result["count"] == 512 and "agreement" not in result
  with open(os.path.join(runs[0], "evaluations", "train.json")) as f:
    assert json.load(f)["accuracy"] == result["accuracy"]


def test_a_workdir_without_a_run_says_what_it_holds(finished, tmp_path):
  workdir, _ = finished
  with pytest.raises(FileNotFoundError, match=r"holds the stages \['student', 'teacher'\]"):
    predict.load(workdir)
  with pytest.raises(FileNotFoundError, match="no config.json"):
    predict.load(str(tmp_path))


def test_class_names_come_from_the_workdir_first(finished, tmp_path):
  workdir, _ = finished
  student = os.path.join(workdir, "student")
  with open(os.path.join(student, data.user_data.LABELS_FILE), "w") as f:
    json.dump([f"digit {i}" for i in range(10)], f)
  try:
    out = predict.load(student).predict([helpers.mnist_small("test")[0]["image"]])
    assert out["name"][0] == f"digit {out['label'][0]}"
  finally:
    os.remove(os.path.join(student, data.user_data.LABELS_FILE))
