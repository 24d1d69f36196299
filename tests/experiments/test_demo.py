"""`make demo`: dataset choice with a fallback, the configs, the table, the sentence, the plot."""

import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.configs import demo as demo_config
from experiments.reports import demo
from kd_jax import data
from kd_jax.data.builders import idx_images
from kd_jax.train import staged_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_falls_back_to_mnist5k_and_says_why(monkeypatch, capsys):
  def unavailable(name, split, **kwargs):
    raise data.DatasetUnavailableError("the Debian package dataset-fashion-mnist is missing")

  monkeypatch.setattr(data, "get_source", unavailable)
  assert demo.choose_dataset() == "mnist5k"
  out = capsys.readouterr().out
  assert "Falling back to MNIST-5k" in out and "dataset-fashion-mnist" in out


def test_demo_configs_validate_and_keep_test_out_of_every_choice():
  for variant in ("fashion_mnist", "mnist5k", "smoke"):
    # Data are resolved too, except Fashion-MNIST where its Debian package is missing (no root).
    resolve = variant != "fashion_mnist" or os.path.isdir(idx_images.DEBIAN_FASHION_MNIST_DIR)
    stages = dict(staged_config.validate_stages(demo_config.get_config(variant), resolve=resolve))
    assert list(stages) == ["teacher", "student_ce", "student_kd"]
    splits = demo_config.SPLITS[variant]
    for stage in stages.values():
      assert stage.validation_split == splits["validation"] != stage.eval_split == "test"
      assert stage.train_split in (splits["train"], splits["labelled"])
    # Only the distilled student sees the unlabelled images, and never their labels.
    assert stages["student_ce"].train_split == splits["labelled"]
    assert stages["student_kd"].method.alpha == 0.0
    assert stages["student_kd"].train_transforms[-1] == demo_config.DROP_LABELS


def test_labels_are_dropped_before_the_distilled_student_sees_them():
  from kd_jax.train import build

  config = demo_config.get_config("smoke").stages.student_kd
  transforms = build._transforms(config.train_transforms, build.data_api())  # pylint: disable=protected-access
  example = {"image": np.zeros((28, 28, 1), np.uint8), "label": 3}
  for transform in transforms:
    example = transform(example, np.random.default_rng(0))
  assert set(example) == {"image"}


RESULTS = {
    "teacher": {"accuracy": 0.9, "evals": {"validation": {"accuracy": 0.91}}},
    "student_ce": {
        "accuracy": 0.7,
        "agreement": 0.72,
        "predictive_kl": 0.5,
        "evals": {"validation": {"accuracy": 0.71}},
    },
    "student_kd": {
        "accuracy": 0.8,
        "agreement": 0.85,
        "predictive_kl": 0.2,
        "evals": {"validation": {"accuracy": 0.81}},
    },
}


def test_table_lists_the_three_models_on_validation_and_test():
  table = demo.format_table(RESULTS, "fashion_mnist")
  assert "91.00%" in table and "90.00%" in table and "85.00%" in table and "0.2000" in table
  assert table.count("\n| ") == 4  # header + 3 rows


def test_sentence_follows_the_numbers():
  sentence = demo.summary_sentence(RESULTS, 1000, 54000)
  assert "1,000 labelled" in sentence and "gains 10.0 points" in sentence
  worse = {**RESULTS, "student_kd": {**RESULTS["student_kd"], "accuracy": 0.65}}
  assert "loses 5.0 points" in demo.summary_sentence(worse, 1000, 54000)


def test_plot_is_written(tmp_path):
  demo.plot(RESULTS, "fashion_mnist", str(tmp_path / "demo.png"))
  assert (tmp_path / "demo.png").stat().st_size > 1000


@pytest.mark.slow
def test_demo_command_prints_the_table_and_draws_the_plot(tmp_path):
  """The README's `make demo` runs `python -m experiments.demo`; here at its smoke size."""
  with open(os.path.join(REPO, "Makefile")) as f:
    assert "$(PY) -m experiments.demo\n" in f.read()
  done = subprocess.run(
      [sys.executable, "-m", "experiments.demo", "--dataset=smoke", f"--workdir={tmp_path}"],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=900,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert "| student, distilled (KD) |" in done.stdout and "labelled images" in done.stdout
  assert (tmp_path / "smoke" / "demo.png").exists() and (tmp_path / "smoke" / "demo.md").exists()
