"""`config.init_from`: a student starts from another run's weights (params and BatchNorm
statistics, optimiser fresh), by path or by stage name; shapes are checked first; the copy happens
once, so a run killed and resumed is bit-identical and never reads the source again. Also the
engine pieces a started-from run needs: the start evaluated and competing for the best state
(`evals.first`), the last state competing too, and the warm-restart learning-rate schedule."""

import json
import os
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from kd_jax.train import build
from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import config as config_lib
from kd_jax.train import config_json
from kd_jax.train import config_validation
from kd_jax.train import evaluation
from kd_jax.train import init_from as init_from_lib
from kd_jax.train import loop
from kd_jax.train import stages
from kd_jax.train import writers
from tests.train import helpers
from tests.train import test_cli


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  """A finished supervised run of TinyCNN (width 8): the run students start from."""
  workdir = str(tmp_path_factory.mktemp("source"))
  results = loop.train_and_evaluate(helpers.tiny_config(total_steps=4, checkpoint_every=4), workdir)
  return workdir, results


def _fresh_student(width=8, seed=0):
  model = helpers.TinyCNN(width=width)
  x = np.zeros((2, 28, 28, 1), np.float32)
  return jax.jit(lambda key: model.init(key, x, train=False))(jax.random.key(seed))


def _leaves(tree):
  return [np.asarray(a) for a in jax.tree.leaves(tree)]


def test_loaded_variables_are_the_source_params_and_batch_norm_statistics(source):
  workdir, _ = source
  _, saved = checkpoint_lib.restore_exported_variables(workdir)
  fresh = _fresh_student()
  loaded, record = init_from_lib.load(
      {"workdir": workdir, "checkpoint": "selected", "interpolate": None}, fresh, student="TinyCNN"
  )
  assert set(loaded) == {"params", "batch_stats"}
  assert jax.tree.structure(loaded) == jax.tree.structure(saved)
  for a, b in zip(_leaves(loaded), _leaves(saved)):
    np.testing.assert_array_equal(a, b)
  # The source's BatchNorm statistics moved away from the fresh (0, 1) ones: they were copied.
  assert not np.allclose(_leaves(loaded["batch_stats"])[0], _leaves(fresh["batch_stats"])[0])
  assert record["step"] == 4 and record["state"] == "last"


def test_interpolation_mixes_params_with_the_random_init_and_keeps_loaded_statistics(source):
  workdir, _ = source
  _, saved = checkpoint_lib.restore_exported_variables(workdir)
  fresh = _fresh_student(seed=3)
  spec = {
      "workdir": workdir,
      "checkpoint": "last",
      "interpolate": {"with": "random", "weight": 0.25},
  }
  loaded, record = init_from_lib.load(spec, fresh, student="TinyCNN")
  for mixed, a, b in zip(
      _leaves(loaded["params"]), _leaves(saved["params"]), _leaves(fresh["params"])
  ):
    np.testing.assert_allclose(mixed, 0.25 * a + 0.75 * b, rtol=1e-6, atol=1e-7)
  for a, b in zip(_leaves(loaded["batch_stats"]), _leaves(saved["batch_stats"])):
    np.testing.assert_array_equal(a, b)
  assert record["interpolate_weight"] == 0.25


def test_a_run_started_from_the_source_evaluates_as_the_source(source, tmp_path):
  """total_steps=0: the run's model is exactly what was loaded (every eval metric identical)."""
  workdir, source_results = source
  config = helpers.tiny_config(total_steps=0)
  config.init_from = ml_collections.ConfigDict({"workdir": workdir})
  results = loop.train_and_evaluate(config, str(tmp_path))
  metrics = [k for k, v in source_results.items() if isinstance(v, float)]
  assert "accuracy" in metrics
  for key in metrics:
    assert results[key] == source_results[key], key
  assert results["init_from"]["workdir"] == workdir and results["init_from"]["step"] == 4
  assert json.load(open(tmp_path / "init_from.json")) == results["init_from"]


def test_shape_mismatch_is_one_line_naming_both_models_and_the_first_array(source, tmp_path):
  workdir, _ = source
  config = helpers.tiny_config(total_steps=2)
  config.model_kwargs = ml_collections.ConfigDict({"width": 6})
  config.init_from = ml_collections.ConfigDict({"workdir": workdir})
  with pytest.raises(ValueError) as error:
    loop.train_and_evaluate(config, str(tmp_path / "student"))
  message = str(error.value)
  assert "\n" not in message
  assert "tests.train.helpers:TinyCNN {'width': 6}" in message  # this run's model
  assert "tests.train.helpers:TinyCNN {'width': 8}" in message  # the source's
  assert "['params']['BatchNorm_0']['bias'] is (8,) in the checkpoint and (6,) in the model" in (
      message
  )
  assert not os.path.exists(tmp_path / "student" / "config.json")  # nothing written


def test_a_source_that_has_not_finished_is_refused(source, tmp_path):
  workdir, _ = source
  unfinished = tmp_path / "unfinished"
  shutil.copytree(workdir, unfinished)
  os.remove(unfinished / "results.json")
  config = helpers.tiny_config(total_steps=2)
  config.init_from = ml_collections.ConfigDict({"workdir": str(unfinished)})
  with pytest.raises(FileNotFoundError, match="has no results.json"):
    loop.train_and_evaluate(config, str(tmp_path / "student"))


@pytest.mark.parametrize(
    "init, message",
    [
        ({"workdir": ""}, "needs a 'workdir'"),
        ({"workdir": "x", "checkpoint": "best"}, "checkpoint must be one of"),
        ({"workdir": "x", "interpolate": {"with": "random", "weight": 1.5}}, "λ in"),
        ({"workdir": "x", "interpolate": {"with": "teacher", "weight": 0.5}}, "interpolate must"),
        ({"workdir": "x", "from": "y"}, r"unknown key\(s\) \['from'\]"),
    ],
)
def test_bad_init_from_settings_are_named(init, message):
  config = helpers.tiny_config()
  config.init_from = ml_collections.ConfigDict(init)
  with pytest.raises(ValueError, match=message) as error:
    config_validation.validate(config)
  assert "not model_kwargs.init_from" in str(error.value)


def _staged(order=("source", "student")):
  config = ml_collections.ConfigDict()
  config.stages = ml_collections.ConfigDict()
  config.stages.source = helpers.tiny_config(total_steps=4, checkpoint_every=4)
  student = helpers.tiny_config(total_steps=4, checkpoint_every=4, validation_split="validation")
  student.init_from = ml_collections.ConfigDict({"workdir": "source"})
  student.evals = ml_collections.ConfigDict(
      {"validation": {"split": "validation", "every": 2, "first": 0}}
  )
  student.model_selection = ml_collections.ConfigDict(
      dict(evaluator="validation", metric="accuracy", mode="max", patience=0)
  )
  config.stages.student = student
  config.stage_order = order
  return config


def test_a_stage_name_resolves_to_that_stage_and_its_start_competes(tmp_path):
  results = stages.run(_staged(), str(tmp_path))
  record = results["student"]["init_from"]
  assert record["workdir"] == os.path.join(str(tmp_path), "source")
  saved = json.load(open(tmp_path / "student" / "config.json"))
  assert saved["init_from"] == {"workdir": "../source"}  # portable: the workdir may move
  assert "init_from" not in json.load(open(tmp_path / "source" / "config.json"))
  rows = [r for r in writers.read_metrics(str(tmp_path / "student")) if r["split"] == "validation"]
  # first=0, every=2 over 4 steps: the start, step 2, the last step (competing), then the final.
  assert [r["step"] for r in rows] == [0, 2, 4, 4]
  # The start evaluates as the source does on the same split.
  source_config = helpers.tiny_config(total_steps=0, validation_split="validation")
  source_config.evals = ml_collections.ConfigDict({"validation": {"split": "validation"}})
  source_config.init_from = ml_collections.ConfigDict({"workdir": str(tmp_path / "source")})
  as_source = loop.train_and_evaluate(source_config, str(tmp_path / "as_source"))
  assert rows[0]["accuracy"] == as_source["evals"]["validation"]["accuracy"]
  periodic = rows[:-1]
  # results.json keeps the periodic evaluations (the curve), not the final one.
  history = results["student"]["history"]["validation"]
  assert history == [{k: v for k, v in r.items() if k not in ("split", "time")} for r in periodic]
  best = periodic[int(np.argmax([r["accuracy"] for r in periodic]))]
  assert results["student"]["model_selection"]["step"] == best["step"]
  assert rows[-1]["accuracy"] == best["accuracy"]  # the final evaluations read the best state


def test_a_stage_that_starts_from_a_later_stage_is_refused(tmp_path):
  with pytest.raises(ValueError, match="init_from uses stage 'source', which does not run before"):
    stages.run(_staged(order=("student", "source")), str(tmp_path))


def test_evaluation_steps_with_and_without_first():
  due = lambda every, first: [s for s in range(13) if evaluation.due(s, every, first)]
  assert due(4, None) == [4, 8, 12]  # as before: never the start
  assert due(4, 0) == [0, 4, 8, 12]
  assert due(5, 2) == [2, 7, 12]
  assert due(0, 3) == [3]
  assert due(0, None) == []


def test_warm_restarts_held_per_block_match_hand_computed_rates():
  opt = config_lib.default_config().optimizer
  opt.learning_rate, opt.restart_steps, opt.hold_steps = 0.1, 6, 2
  _, schedule = build.build_optimizer(opt, 24)
  rates = [float(schedule(step)) for step in range(14)]
  # Blocks of 2 steps; the cosine over 6 steps restarts at 6 and 12: positions 0, 2, 4 → 0.1,
  # 0.1·(1 + cos(π/3))/2 = 0.075, 0.1·(1 + cos(2π/3))/2 = 0.025.
  expected = [0.1, 0.1, 0.075, 0.075, 0.025, 0.025] * 2 + [0.1, 0.1]
  np.testing.assert_allclose(rates, expected, rtol=1e-6)
  opt.schedule = "constant"
  with pytest.raises(ValueError, match="restarts a cosine"):
    config_validation.validate(helpers.tiny_config(optimizer=opt))


def test_configs_saved_before_the_new_keys_still_compare_equal(tmp_path):
  """A config.json without `init_from`, `restart_steps`, `hold_steps` (older runs) resumes."""
  config = config_validation.validate(helpers.tiny_config())
  saved = json.loads(config.to_json())
  del saved["init_from"], saved["optimizer"]["restart_steps"], saved["optimizer"]["hold_steps"]
  assert config_json.portable(saved, str(tmp_path)) == config_json.portable(
      json.loads(config.to_json()), str(tmp_path)
  )


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical_and_never_rereads_the_source(source, tmp_path):
  workdir, _ = source
  own_source = tmp_path / "source"
  shutil.copytree(workdir, own_source)
  config = f"{test_cli.TINY}:init_from={own_source}"
  reference = test_cli.cli(config, tmp_path / "reference")
  victim_dir = tmp_path / "victim"
  test_cli.start_and_kill(config, victim_dir)
  test_cli.finish(reference)
  # Gone before the resume: reading it again would fail (no results.json, no checkpoints).
  shutil.move(str(own_source), str(tmp_path / "moved_away"))
  output = test_cli.finish(test_cli.cli(config, victim_dir))
  assert "Resuming" in output, output[-2000:]
  _, expected = checkpoint_lib.restore_latest_state(str(tmp_path / "reference"))
  _, resumed = checkpoint_lib.restore_latest_state(str(victim_dir))
  assert jax.tree.structure(expected) == jax.tree.structure(resumed)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  reference_results = json.load(open(tmp_path / "reference" / "results.json"))
  resumed_results = json.load(open(victim_dir / "results.json"))
  assert reference_results == resumed_results
  assert resumed_results["init_from"]["step"] == 4
  assert test_cli.train_losses(victim_dir)[0] == list(range(1, 25))
