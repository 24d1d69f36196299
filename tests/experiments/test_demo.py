"""`make demo`: dataset choice with a fallback, the configs, and the printed table."""

from experiments.reports import demo
from experiments.configs import demo as demo_config
from kd_jax import data
from kd_jax.train import config as config_lib


def test_falls_back_to_mnist5k_and_says_why(monkeypatch, capsys):
  def unavailable(name, split, **kwargs):
    raise data.DatasetUnavailableError("the Debian package dataset-fashion-mnist is missing")
  monkeypatch.setattr(data, "get_source", unavailable)
  assert demo.choose_dataset() == "mnist5k"
  out = capsys.readouterr().out
  assert "Falling back to MNIST-5k" in out and "dataset-fashion-mnist" in out


def test_demo_configs_validate_for_both_datasets():
  for variant in ("fashion_mnist", "mnist5k"):
    stages = config_lib.validate_stages(demo_config.get_config(variant))
    assert [name for name, _ in stages] == ["teacher", "student_ce", "student_kd"]


def test_table_lists_the_three_models_with_fidelity():
  results = {"teacher": {"accuracy": 0.9},
             "student_ce": {"accuracy": 0.8, "agreement": 0.85, "predictive_kl": 0.4},
             "student_kd": {"accuracy": 0.82, "agreement": 0.9, "predictive_kl": 0.2}}
  table = demo.format_table(results, "fashion_mnist")
  assert "90.00%" in table and "85.00%" in table and "0.2000" in table
  assert table.count("\n| ") == 4  # header + 3 rows
