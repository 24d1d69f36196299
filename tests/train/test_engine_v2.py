"""Engine v2's extension points, each checked to do what it says, with a toy method that uses all
of them (tests/train/toy_method.py): prepare → constants, the run context, a method's own
BatchNorm state, an EMA of the student's BatchNorm statistics, two evaluators; and resume after
SIGKILL with constants present (bit-identical, constants not recomputed)."""

import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import constants as constants_lib
from kd_jax.train import loop
from kd_jax.train import writers
from tests.train import helpers
from tests.train import test_cli
from tests.train import toy_method

STEPS_PER_EPOCH = 8  # 512 train examples / batch 64


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("toy"))
  results = loop.train_and_evaluate(toy_method.toy_config(), workdir)
  return workdir, results


def _state(workdir, step):
  """The whole train state saved at `step` (the newest one fixes structure and placement)."""
  manager = checkpoint_lib.Checkpointer(workdir, async_save=False)
  try:
    like = checkpoint_lib.restore_latest_state(workdir)[1]
    return manager.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(like))
    )["state"]
  finally:
    manager.close()


def test_prepare_computes_constants_on_the_train_split_once(toy_run):
  workdir, _ = toy_run
  manifest = json.load(open(os.path.join(workdir, "constants", "manifest.json")))
  constants = constants_lib.load(workdir, manifest["fingerprint"])
  source = helpers.mnist_small("train")
  labels = np.array([source[i]["label"] for i in range(len(source))])
  images = np.stack([source[i]["image"] for i in range(len(source))]) / 255.0
  np.testing.assert_allclose(
      constants["class_prior"], np.bincount(labels, minlength=10) / 512, rtol=1e-6
  )
  np.testing.assert_allclose(constants["pixel_mean"], images.mean(), rtol=1e-5)
  assert set(manifest["arrays"]) == {"class_prior", "pixel_mean"}
  # The loss saw the same constant every step.
  rows = [r for r in writers.read_metrics(workdir) if r["split"] == "train"]
  assert {round(r["pixel_mean"], 6) for r in rows} == {round(float(constants["pixel_mean"]), 6)}


def test_constants_are_not_in_the_checkpoints(toy_run):
  workdir, _ = toy_run
  _, state = checkpoint_lib.restore_latest_state(workdir)
  assert "class_prior" not in json.dumps(jax.tree_util.tree_structure(state).__repr__())
  assert set(state) == {
      "step",
      "params",
      "model_state",
      "method_model_state",
      "opt_state",
      "method_state",
      "rng",
      "nonfinite",
  }


def test_run_context_drives_schedules(toy_run):
  workdir, _ = toy_run
  rows = [r for r in writers.read_metrics(workdir) if r["split"] == "train"]
  for row in rows:
    step = row["step"] - 1  # the optimiser step the logged update computed
    np.testing.assert_allclose(row["lambda"], toy_method.gate_weight(step, 12), rtol=1e-5)
    np.testing.assert_allclose(row["epoch"], step / STEPS_PER_EPOCH, rtol=1e-6)
  # The gate trains during the first epoch only (steps 0..7): moves 4 -> 8, frozen 8 -> 12.
  gates = {s: _state(workdir, s)["params"]["method"]["gate"] for s in (4, 8, 12)}
  moved = [
      float(np.abs(a - b).max())
      for a, b in zip(jax.tree.leaves(gates[4]), jax.tree.leaves(gates[8]))
  ]
  assert max(moved) > 0
  for a, b in zip(jax.tree.leaves(gates[8]), jax.tree.leaves(gates[12])):
    np.testing.assert_array_equal(a, b)


def test_method_batch_norm_state_is_updated_in_train_mode(toy_run):
  workdir, _ = toy_run
  stats = {s: _state(workdir, s)["method_model_state"]["batch_stats"] for s in (4, 12)}
  mean_4, mean_12 = (np.asarray(stats[s]["BatchNorm_0"]["mean"]) for s in (4, 12))
  assert np.abs(mean_4).max() > 0 and not np.array_equal(mean_4, mean_12)


def test_ema_tracks_student_params_and_batch_norm_statistics(toy_run):
  workdir, _ = toy_run
  before, after = _state(workdir, 8), _state(workdir, 12)
  # Replay the EMA over the saved student states is impossible between checkpoints, but one
  # fact pins it down: ema_12 − ema_8 is a convex mix of the student's path, so the EMA of the
  # BatchNorm statistics moved, and lies between the student's old and new statistics.
  ema_8 = np.asarray(before["method_state"]["ema"]["batch_stats"]["BatchNorm_0"]["mean"])
  ema_12 = np.asarray(after["method_state"]["ema"]["batch_stats"]["BatchNorm_0"]["mean"])
  student_12 = np.asarray(after["model_state"]["batch_stats"]["BatchNorm_0"]["mean"])
  assert not np.array_equal(ema_8, ema_12) and not np.array_equal(ema_12, student_12)
  ema_kernel = after["method_state"]["ema"]["params"]["Dense_0"]["kernel"]
  assert not np.array_equal(ema_kernel, after["params"]["student"]["Dense_0"]["kernel"])


def test_two_evaluators_write_one_entry_each(toy_run):
  workdir, results = toy_run
  saved = json.load(open(os.path.join(workdir, "results.json")))
  assert set(saved["evals"]) == {"eval", "validation", "summary"}
  assert saved["evals"]["summary"]["examples"] == 128  # the whole validation split, once
  # "eval" first, then by name: "summary" sees eval's result, "validation" runs after it.
  assert saved["evals"]["summary"]["previous"] == 1.0
  assert saved["accuracy"] == saved["evals"]["eval"]["accuracy"] == results["accuracy"]
  assert 0 < saved["evals"]["validation"]["ema_accuracy"]
  periodic = [r for r in writers.read_metrics(workdir) if r["split"] == "validation"]
  assert [r["step"] for r in periodic] == [6, 12]  # every: 6, and the final evaluation


def test_constants_mismatch_and_corruption_are_clear_errors(toy_run, tmp_path):
  workdir, _ = toy_run
  manifest = json.load(open(os.path.join(workdir, "constants", "manifest.json")))
  with pytest.raises(constants_lib.ConstantsError, match="prepared for a different run"):
    constants_lib.load(workdir, {**manifest["fingerprint"], "seed": 7})
  copy = tmp_path / "copy"
  os.makedirs(copy / "constants")
  for name in ("manifest.json", "constants.safetensors"):
    data = open(os.path.join(workdir, "constants", name), "rb").read()
    if name.endswith("safetensors"):
      data = data[:-4] + bytes(b ^ 0xFF for b in data[-4:])  # flip the last array bytes
    open(copy / "constants" / name, "wb").write(data)
  with pytest.raises(constants_lib.ConstantsError, match="SHA-256"):
    constants_lib.load(str(copy), manifest["fingerprint"])


def test_batch_dependent_method_refuses_gradient_accumulation(tmp_path):
  config = helpers.tiny_config(grad_accum_steps=2)
  config.method = ml_collections.ConfigDict({"name": "rkd"})
  config.teachers = (
      ml_collections.ConfigDict(
          {"model": "tests.train.helpers:TinyCNN", "workdir": str(tmp_path / "t")}
      ),
  )
  with pytest.raises(ValueError, match="batch-dependent loss.*grad_accum_steps=2"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))


def test_prepare_never_sees_the_test_split(tmp_path):
  config = toy_method.toy_config(validation_split=None)
  config.evals = ml_collections.ConfigDict()
  config.method.name = "tests.train.test_engine_v2:ReadsValidation"
  with pytest.raises(ValueError, match="set config.validation_split"):
    loop.train_and_evaluate(config, str(tmp_path))


class ReadsValidation(toy_method.ToyEverything):

  def prepare(self, ctx):
    return {"n": np.asarray(len(ctx.map_split(lambda b: {"y": b["label"]}, "validation")["y"]))}


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical_with_constants(tmp_path):
  config = f"{test_cli.TINY}:engine_v2"
  reference = test_cli.cli(config, tmp_path / "reference")
  victim_dir = tmp_path / "victim"
  test_cli.start_and_kill(config, victim_dir)
  constants_file = victim_dir / "constants" / "constants.safetensors"
  mtime = os.path.getmtime(constants_file)
  output = test_cli.finish(test_cli.cli(config, victim_dir))
  assert "Resuming" in output and "Preparing constants" not in output, output[-2000:]
  assert os.path.getmtime(constants_file) == mtime
  test_cli.finish(reference)
  _, expected = checkpoint_lib.restore_latest_state(str(tmp_path / "reference"))
  _, resumed = checkpoint_lib.restore_latest_state(str(victim_dir))
  assert jax.tree.structure(expected) == jax.tree.structure(resumed)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert json.load(open(tmp_path / "reference" / "results.json")) == json.load(
      open(victim_dir / "results.json")
  )


def test_best_checkpoint_is_chosen_on_validation_and_early_stopping(tmp_path):
  config = helpers.tiny_config(
      total_steps=24,
      checkpoint_every=8,
      validation_split="validation",
      optimizer=ml_collections.ConfigDict(
          dict(
              name="sgd",
              learning_rate=0.3,
              momentum=0.9,
              nesterov=False,
              weight_decay=0.0,
              schedule="constant",
              warmup_steps=0,
              end_learning_rate=0.0,
          )
      ),
  )
  config.evals = ml_collections.ConfigDict({"validation": {"split": "validation", "every": 2}})
  config.model_selection = ml_collections.ConfigDict(
      dict(evaluator="validation", metric="accuracy", mode="max", patience=2)
  )
  results = loop.train_and_evaluate(config, str(tmp_path))
  periodic = [r for r in writers.read_metrics(str(tmp_path)) if r["split"] == "validation"]
  periodic, final = periodic[:-1], periodic[-1]
  accuracies = [r["accuracy"] for r in periodic]
  best = periodic[int(np.argmax(accuracies))]  # the first maximum: later ties do not replace it
  selection = results["model_selection"]
  assert selection["step"] == best["step"] and selection["value"] == best["accuracy"]
  # The final evaluations read the best state: its validation accuracy is the selected one.
  assert results["evals"]["validation"]["accuracy"] == best["accuracy"] == final["accuracy"]
  after_best = [r for r in periodic if r["step"] > best["step"]]
  if selection["stopped_early_at"] is not None:
    assert len(after_best) == 2 and all(r["accuracy"] <= best["accuracy"] for r in after_best)
    train_steps = [r["step"] for r in writers.read_metrics(str(tmp_path)) if r["split"] == "train"]
    assert max(train_steps) == selection["stopped_early_at"] < 24
  else:
    assert len(after_best) < 2
  # A rerun of the finished (or early-stopped) run only returns its results.
  assert loop.train_and_evaluate(config, str(tmp_path)) == json.loads(json.dumps(results))


def test_model_selection_on_the_test_split_is_refused(tmp_path):
  config = helpers.tiny_config(validation_split="validation")
  config.evals = ml_collections.ConfigDict({"peek": {"split": "test", "every": 2}})
  config.model_selection = ml_collections.ConfigDict(
      dict(evaluator="peek", metric="accuracy", mode="max", patience=0)
  )
  with pytest.raises(ValueError, match="test split"):
    loop.train_and_evaluate(config, str(tmp_path))


def test_a_teacher_declared_differently_from_its_checkpoint_is_named(tmp_path):
  teacher_dir = tmp_path / "teacher"
  loop.train_and_evaluate(
      helpers.tiny_config(total_steps=2, checkpoint_every=2, eval_batch_size=256), str(teacher_dir)
  )
  os.remove(teacher_dir / "config.json")  # a teacher trained elsewhere: nothing to compare to
  config = helpers.tiny_config(total_steps=2)
  config.method = ml_collections.ConfigDict({"name": "vanilla_kd"})
  config.teachers = (
      ml_collections.ConfigDict(
          {
              "model": "tests.train.helpers:TinyCNN",
              "model_kwargs": {"width": 6},
              "workdir": str(teacher_dir),
          }
      ),
  )
  with pytest.raises(
      ValueError,
      match=r"teachers\[0\] \(tests.train.helpers:TinyCNN .*does not "
      r"match the checkpoint.*in the checkpoint and",
  ):
    loop.train_and_evaluate(config, str(tmp_path / "student"))


def test_pretrained_weights_are_loaded_after_init_and_survive_two_runs(tmp_path):
  """`load_pretrained` runs after `init`; a cached array it returns is copied, so the donated
  train state of the first run does not delete it under the second (two stages, one process)."""
  for run in ("first", "second"):
    config = helpers.tiny_config(
        total_steps=2, checkpoint_every=2, model="tests.train.toy_method:CachedPretrainedCNN"
    )
    loop.train_and_evaluate(config, str(tmp_path / run))
  assert float(toy_method._CACHED_BIAS["bias"][0]) == pytest.approx(0.01)  # pylint: disable=protected-access


def test_teacher_cache_equals_running_the_teacher(tmp_path):
  """Deterministic views: cached teacher outputs give the very same training as the teacher."""
  teacher_dir = tmp_path / "teacher"
  loop.train_and_evaluate(helpers.tiny_config(total_steps=4, checkpoint_every=4), str(teacher_dir))
  runs = {}
  for cached in (False, True):
    config = helpers.tiny_config(
        total_steps=6,
        checkpoint_every=6,
        teacher_cache=cached,
        train_transforms=("NormalizeImage",),
        eval_transforms=("NormalizeImage",),
    )
    config.method = ml_collections.ConfigDict({"name": "vanilla_kd", "temperature": 2.0})
    config.teachers = (
        ml_collections.ConfigDict(
            {
                "model": "tests.train.helpers:TinyCNN",
                "model_kwargs": {"width": 8},
                "workdir": str(teacher_dir),
            }
        ),
    )
    workdir = tmp_path / f"cached_{cached}"
    runs[cached] = loop.train_and_evaluate(config, str(workdir))
    runs[cached, "loss"] = [
        r["loss"] for r in writers.read_metrics(str(workdir)) if r["split"] == "train"
    ]
  assert len(list((tmp_path / "cached_True" / "teacher_cache").glob("*/manifest.json"))) == 1
  np.testing.assert_allclose(runs[True, "loss"], runs[False, "loss"], rtol=1e-5)
  assert runs[True]["agreement"] == pytest.approx(runs[False]["agreement"], abs=1e-6)


def test_teacher_cache_is_refused_under_random_augmentation(tmp_path):
  config = helpers.tiny_config(
      teacher_cache=True, train_transforms=({"name": "PadCropFlip", "padding": 2},)
  )
  config.method = ml_collections.ConfigDict({"name": "vanilla_kd"})
  config.teachers = (
      ml_collections.ConfigDict(
          {"model": "tests.train.helpers:TinyCNN", "workdir": str(tmp_path / "t")}
      ),
  )
  with pytest.raises(ValueError, match=r"deterministic train transforms, but \['PadCropFlip'\]"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
