"""Reliability round 2 (issue 31) end to end: the runs behind the one-line refusals of
test_bad_inputs_round2.py, and the valid versions they must still accept.

A CSV edited between stages, a stage's saved config checked before earlier stages train,
choice.json written only after the stage's checks, one-way config references in every shipped
config, seeded ScaNN builds, the FATAL line of a diverged run naming a checkpoint that is on disk,
NaN checkpoints skipped on resume, traced temperatures, predictions on valid inputs.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import json
import os
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.configs import text_kd
from kd_jax import predict
from kd_jax import retrieval
from kd_jax.losses import contrastive
from kd_jax.losses import logits as logit_losses
from kd_jax.losses import relational
from kd_jax.metrics import fidelity
from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import choices
from kd_jax.train import config_references
from kd_jax.train import config_validation
from kd_jax.train import loop
from kd_jax.train import stages
from kd_jax.train import workdir_config
from tests import compile_flags
from tests.reliability import test_bad_inputs_round2 as matrix
from tests.train import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def run_cli(config, workdir, *overrides, timeout=240):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, XLA_FLAGS=compile_flags.xla_flags())
  process = subprocess.run(
      [sys.executable, "-m", "experiments.main", f"--config={config}", f"--workdir={workdir}"]
      + list(overrides),
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=timeout,
  )
  fatal = [line for line in (process.stdout + process.stderr).splitlines() if "FATAL" in line]
  return process.returncode, fatal, process.stdout + process.stderr


# --- Item 1: a CSV edited between the stages of one command -------------------------------------


class TinyMLP(nn.Module):
  num_classes: int = 2

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    embedding = nn.relu(nn.Dense(8)(x))
    return {"logits": nn.Dense(self.num_classes)(embedding), "embedding": embedding}


MLP = "tests.reliability.test_round2_runs:TinyMLP"


def _csv_stage(path, **overrides):
  c = helpers.tiny_config(
      dataset=f"csv:{path}?features=f*&split=random",
      input_key="features",
      num_classes=2,
      total_steps=2,
      checkpoint_every=2,
      batch_size=8,
      eval_batch_size=8,
      **overrides,
  )
  c.model, c.model_kwargs = MLP, ml_collections.ConfigDict()
  return c


def test_a_csv_edited_after_its_teacher_trained_is_named(tmp_path):
  path = matrix._csv(tmp_path, rows=60)  # pylint: disable=protected-access
  student = _csv_stage(path, method=ml_collections.ConfigDict({"name": "vanilla_kd"}))
  student.teachers = (ml_collections.ConfigDict({"model": MLP, "workdir": "teacher"}),)
  config = ml_collections.ConfigDict(
      {
          "stages": {"teacher": _csv_stage(path), "student": student},
          "stage_order": ("teacher", "student"),
      }
  )
  stages.run(config, str(tmp_path / "run"))
  assert json.load(open(tmp_path / "run" / "teacher" / "data.json"))["fingerprint"]["bytes"] > 0

  path.write_text(path.read_text().replace("59,2,1", "59,2,0"))
  # Rerunning the command: the first stage it would resume names the file.
  with pytest.raises(ValueError, match=r"reviews.csv changed since the run in \S+/teacher was"):
    stages.run(config, str(tmp_path / "run"))
  # A new student of that teacher, on the edited file: the teacher restore names it.
  fresh = _csv_stage(path, method=ml_collections.ConfigDict({"name": "vanilla_kd"}))
  fresh.teachers = (
      ml_collections.ConfigDict({"model": MLP, "workdir": str(tmp_path / "run" / "teacher")}),
  )
  with pytest.raises(
      ValueError, match=r"reviews.csv changed since teachers\[0\] \(\S+/teacher\) was trained on"
  ):
    loop.train_and_evaluate(fresh, str(tmp_path / "fresh"))
  assert not (tmp_path / "fresh" / "config.json").exists()


def test_the_same_data_resumes_and_the_workdir_keeps_its_fingerprint(tmp_path):
  config, workdir, path = matrix._csv_run(tmp_path)  # pylint: disable=protected-access
  workdir_config.check_same(config, workdir)  # unchanged: accepted
  os.utime(path, None)  # touched, same bytes: still the same data
  workdir_config.check_same(config, workdir)
  saved = json.load(open(os.path.join(workdir, workdir_config.DATA_FILE)))["fingerprint"]
  assert saved["file"] == str(path) and len(saved["sha256"]) == 64


# --- Item 10: a started stage's changed config fails before earlier stages train --------------


def test_a_changed_later_stage_fails_before_the_first_stage_trains(tmp_path):
  config = ml_collections.ConfigDict(
      {
          "stages": {
              "first": helpers.tiny_config(total_steps=2),
              "second": helpers.tiny_config(total_steps=2),
          },
          "stage_order": ("first", "second"),
      }
  )
  started = helpers.tiny_config(total_steps=3)  # what "second" was started with
  workdir_config.save(config_validation.validate(started), str(tmp_path / "second"))
  with pytest.raises(ValueError, match=r"\S+/second holds a run with a different config"):
    stages.run(config, str(tmp_path))
  assert not (tmp_path / "first").exists()


# --- Item 2: references -------------------------------------------------------------------------


def _variants(module) -> list[str]:
  """The variants a config file lists when asked for an unknown one."""
  with pytest.raises(ValueError) as error:
    module.get_config("no_such_variant")
  listed = str(error.value).split("variants are", 1)[1].split(", got")[0]
  return [word for word in re.findall(r"[A-Za-z_]\w*", listed) if word != "and"]


def test_no_shipped_config_shares_a_reference_between_keys():
  checked = []
  for path in sorted(glob.glob(os.path.join(ROOT, "experiments", "configs", "*.py"))):
    name = os.path.basename(path)[:-3]
    if name.startswith("_"):
      continue
    module = importlib.import_module(f"experiments.configs.{name}")
    variants = _variants(module)
    assert variants, name
    for variant in variants:
      shared = config_references.shared_references(module.get_config(variant))
      assert not shared, f"{name}:{variant} shares one FieldReference between {shared[0]}"
      checked.append(f"{name}:{variant}")
  assert {"text_kd:cpu", "text_kd:smoke", "reaugkd:smoke", "amad:paper"} <= set(checked)


def test_text_kd_overrides_change_one_key_or_every_reader_of_a_setting():
  config = text_kd.get_config("cpu")
  # As `--config.settings.teacher_steps=40 --config.stages.teacher.checkpoint_every=5` sets them.
  config.settings.teacher_steps = 40
  config.stages.teacher.checkpoint_every = 5
  assert config.stages.teacher.total_steps == 40
  assert config.stages.teacher.checkpoint_every == 5
  config.settings.student_layers = 2
  config.stages.student_kd.total_steps = 7
  assert config.stages.student_ce.total_steps == config.settings.student_steps == 200
  assert config.stages.student_kd.model_kwargs.num_layers == 2
  assert config.stages.student_ce.model_kwargs.num_layers == 2
  config.settings.max_length = 24
  transforms = config.stages.teacher.train_transforms + config.stages.teacher.eval_transforms
  assert [t["max_length"] for t in transforms if t["name"] == "Tokenize"] == [24, 24]


def test_the_command_line_refuses_an_override_of_a_shared_reference(tmp_path):
  code, fatal, output = run_cli(
      "tests/reliability/shared_reference_config.py",
      tmp_path / "run",
      "--config.checkpoint_every=5",
  )
  assert code != 0 and len(fatal) == 1, output[-2000:]
  assert "--config.checkpoint_every would also change total_steps" in fatal[0]
  assert not (tmp_path / "run").exists()


# --- Item 3: pretrained teachers that do bring their weights ------------------------------------


def test_pretrained_teachers_that_load_what_the_method_reads_are_accepted():
  loaded = matrix._pretrained_load("all")  # pylint: disable=protected-access
  assert set(loaded["params"]) == {"Conv_0", "Dense_0", "classifier"}
  # A random head is fine for a method that reads only the embedding.
  matrix._pretrained_load("body", method="crd")  # pylint: disable=protected-access


def test_minilm_with_a_new_head_is_refused_as_a_logit_teacher():
  from kd_jax.models import get_model  # pylint: disable=g-import-not-at-top
  from kd_jax.train import pretrained_teachers  # pylint: disable=g-import-not-at-top

  kwargs = {"num_layers": 1, "num_classes": 2}
  spec = ml_collections.ConfigDict(
      {"model": "bert_classifier", "model_kwargs": kwargs, "pretrained": True}
  )
  module = get_model("bert_classifier", **kwargs)
  initial = module.init(jax.random.key(0), jnp.ones((1, 8), jnp.int32), train=False)
  kd = helpers.tiny_config(method=ml_collections.ConfigDict({"name": "vanilla_kd"}))
  with pytest.raises(ValueError, match=r"its classifier head is new and random"):
    pretrained_teachers.load(kd, 0, spec, module, initial)
  # The same encoder for an embedding method: everything it reads is MiniLM's.
  embedding = helpers.tiny_config(method=ml_collections.ConfigDict({"name": "crd"}))
  pretrained_teachers.load(embedding, 0, spec, module, initial)


# --- Item 4: choices ----------------------------------------------------------------------------


@pytest.mark.parametrize("order", [("a", "b", "c"), ("c", "b", "a")])
def test_a_nan_validation_score_never_wins(tmp_path, order):
  scores = {"a": float("nan"), "b": 0.7, "c": 0.6}
  spec = matrix._candidates(tmp_path, {n: scores[n] for n in order})  # pylint: disable=W0212
  assert choices.choose(spec, str(tmp_path), "best").winner == "b"
  spec["mode"] = "min"
  assert choices.choose(spec, str(tmp_path), "best").winner == "c"
  assert not (tmp_path / "best").exists()  # choosing writes nothing


def test_choice_json_is_written_only_after_the_stage_checks(tmp_path):
  def candidate(smoothing):
    return helpers.tiny_config(
        total_steps=1,
        evals=ml_collections.ConfigDict({"validation": {"split": "validation"}}),
        validation_split="validation",
        method=ml_collections.ConfigDict({"name": "supervised", "label_smoothing": smoothing}),
    )

  config = ml_collections.ConfigDict(
      {
          "stages": {"a": candidate(0.0), "b": candidate(0.1), "chosen": candidate(0.0)},
          "stage_order": ("a", "b", "chosen"),
          "choices": {"chosen": choices.best_validation_accuracy(("a", "b"))},
      }
  )
  stages.run(config, str(tmp_path))
  record = json.load(open(tmp_path / "chosen" / "choice.json"))
  loser = "b" if record["chosen"] == "a" else "a"
  # The loser's results change: the choice flips, the finished stage refuses the new method...
  path = tmp_path / loser / "results.json"
  results = json.load(open(path))
  results["evals"]["validation"]["accuracy"] = 2.0
  path.write_text(json.dumps(results))
  with pytest.raises(ValueError, match=r"\S+/chosen holds a run with a different config"):
    stages.run(config, str(tmp_path))
  # ...and choice.json still names the winner the stage was trained with.
  assert json.load(open(tmp_path / "chosen" / "choice.json"))["chosen"] == record["chosen"]


# --- Item 9: ScaNN ------------------------------------------------------------------------------


def test_scann_builds_are_seeded_and_reproducible():
  rng = np.random.default_rng(0)
  database = rng.normal(size=(300, 16)).astype(np.float32)
  queries = rng.normal(size=(40, 16)).astype(np.float32)
  params = retrieval.ScannParams(num_leaves=16, num_leaves_to_search=4, reorder=8)
  builds = [retrieval.ScannSearcher(database, params=params, default_k=5) for _ in range(4)]
  answers = [b.search(queries, 5)[0] for b in builds]
  for other in answers[1:]:
    np.testing.assert_array_equal(other, answers[0])
  assert "clustering_seed: 0" in builds[0].config
  reseeded = retrieval.ScannSearcher(
      database, params=dataclasses.replace(params, seed=3), default_k=5
  )
  assert "clustering_seed: 3" in reseeded.config
  assert not np.array_equal(reseeded.search(queries, 5)[0], answers[0])


# --- Item 7: messages that match the disk -------------------------------------------------------


def test_the_fatal_line_of_a_diverged_run_names_a_checkpoint_that_is_on_disk(tmp_path):
  workdir = tmp_path / "run"
  code, fatal, output = run_cli("tests/reliability/diverging_run.py:4", workdir)
  assert code != 0 and len(fatal) == 1, output[-3000:]
  kept = re.search(r"the last good checkpoint \(step (\d+)\) is kept", fatal[0])
  assert kept and "Non-finite values at step 5" in fatal[0], fatal[0]
  # The step it names was saved (asynchronously) just before: it is there, and it restores.
  assert (workdir / "checkpoints" / kept.group(1)).is_dir()
  step, state = checkpoint_lib.restore_latest_state(str(workdir))
  assert step == int(kept.group(1)) == 4
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state["params"]))


def test_a_nan_checkpoint_is_set_aside_and_the_previous_good_one_resumed(tmp_path, capsys):
  tiny = matrix._tiny_state  # pylint: disable=protected-access
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path), async_save=False)
  checkpointer.save(4, tiny(4), {"position": 4})
  checkpointer.save(8, tiny(8, poison=True), {"position": 8})
  restored = checkpointer.restore_latest(tiny(0))
  checkpointer.close()
  assert restored.step == 4 and restored.iterator_state == {"position": 4}
  warning = capsys.readouterr().out
  assert "checkpoint step 8" in warning and "non-finite values (NaN or inf)" in warning
  assert "although its checksums match" in warning
  assert len(os.listdir(tmp_path / "checkpoints_broken")) == 1


def test_an_optimiser_infinity_sentinel_is_a_good_checkpoint_but_an_optimiser_nan_is_not(tmp_path):
  # optax.contrib.reduce_on_plateau keeps best_value = +inf until its first epoch ends (SEA).
  def state(step, best_value):
    return {**matrix._tiny_state(step), "opt_state": {"best_value": jnp.asarray(best_value)}}  # pylint: disable=protected-access

  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path), async_save=False)
  checkpointer.save(4, state(4, jnp.inf), {"position": 4})
  checkpointer.save(8, state(8, jnp.nan), {"position": 8})
  restored = checkpointer.restore_latest(state(0, 0.0))
  checkpointer.close()
  assert restored.step == 4 and restored.state["opt_state"]["best_value"] == np.inf
  assert len(os.listdir(tmp_path / "checkpoints_broken")) == 1  # the NaN one


# --- Item 8: traced temperatures, set metrics ---------------------------------------------------


def test_losses_take_a_traced_temperature():
  student, teacher = jax.random.normal(jax.random.key(0), (2, 4, 5))
  eager = logit_losses.hinton_kd(student, teacher, temperature=2.0)
  traced = jax.jit(lambda t: logit_losses.hinton_kd(student, teacher, temperature=t))
  np.testing.assert_allclose(traced(2.0), eager, rtol=1e-6)
  # A non-positive traced temperature cannot raise: the loss is NaN, which the guard names.
  assert np.all(np.isnan(traced(0.0)))
  embeddings, labels = jax.random.normal(jax.random.key(1), (6, 3)), jnp.array([0, 1, 0, 1, 2, 2])
  supcon = jax.jit(
      lambda t: contrastive.supervised_contrastive(embeddings, labels, temperature=t)[0]
  )
  assert np.all(np.isfinite(supcon(0.1))) and np.all(np.isnan(supcon(-1.0)))
  anchors = jax.random.normal(jax.random.key(2), (4, 3))
  similarity = jax.jit(
      lambda t: relational.similarity_kl(embeddings, anchors, embeddings, anchors, temperature=t)
  )
  assert np.all(np.isfinite(similarity(0.5))) and np.all(np.isnan(similarity(0.0)))


def test_set_metrics_of_enough_examples_still_work_and_traced_counts_give_nan():
  x = jax.random.normal(jax.random.key(0), (6, 4))
  assert float(fidelity.linear_cka(x, x)) == pytest.approx(1.0, abs=1e-5)
  two = jnp.array([True, True, False, False, False, False])
  assert np.isfinite(float(fidelity.linear_cka(x, x, mask=two)))
  masked = jax.jit(lambda mask: fidelity.linear_cka(x, x, mask=mask))
  assert np.isnan(float(masked(jnp.zeros(6, bool))))
  logits, labels = jax.random.normal(jax.random.key(1), (6, 3)), jnp.arange(6) % 3
  assert 0 <= float(fidelity.expected_calibration_error(logits, labels)) <= 1
  ece = jax.jit(lambda m: fidelity.expected_calibration_error(logits, labels, mask=m))
  assert np.isnan(float(ece(jnp.zeros(6, bool))))


# --- Item 6: valid inputs still predict ---------------------------------------------------------


def test_valid_inputs_of_the_trained_form_still_predict(tmp_path):
  workdir = matrix._finished_run(tmp_path)  # pylint: disable=protected-access
  model = predict.load(workdir)
  images = matrix._digits(4)  # pylint: disable=protected-access
  labels = model.predict(images)["label"]
  assert model.predict([image[..., 0] for image in images])["label"] == labels  # 2-D
  scaled = [image.astype(np.float32) / 255.0 for image in images]  # floats as the model sees them
  assert model.predict(scaled)["label"] == labels
  spec = workdir_config.read_data(workdir)["model_input"]
  assert spec == {"key": "image", "dtype": "uint8", "shape": [28, 28, 1], "min": 0.0, "max": 1.0}


def test_the_teacher_cache_key_follows_the_content_of_a_user_file(tmp_path):
  from kd_jax.train import teacher_cache  # pylint: disable=g-import-not-at-top

  path = matrix._csv(tmp_path, rows=20)  # pylint: disable=protected-access
  config = _csv_stage(path, method=ml_collections.ConfigDict({"name": "vanilla_kd"}))
  config.teachers = (ml_collections.ConfigDict({"model": MLP, "workdir": "/runs/teacher"}),)
  variables = {"params": {"w": np.ones(3, np.float32)}}
  key = lambda: teacher_cache.key(
      teacher_cache.fingerprint(config, (variables,), (2,), ("logits",), 16)
  )
  before = key()
  assert key() == before
  path.write_text(path.read_text().replace("19,1,1", "19,1,0"))  # same name, rows and size
  assert key() != before
