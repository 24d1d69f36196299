"""The bad-input matrix, round 2 (issue 31): mistakes that used to pass silently or end in an
error that names nothing — changed data, shared config references, random "pretrained" teachers,
diverged choices, ScaNN below its recall, checkpoints and messages that disagree with the disk,
set metrics of too few examples, predictions on inputs of another form, late checks.

Same form as test_bad_inputs.py: each case builds one bad input, calls the entry point a user
would call, and asserts the exception type and that the one-line message names the problem.
The runs these need are tiny and built by hand (no training); the end-to-end cases (a CSV
edited between stages, choice.json, the FATAL line of a diverged run) are in
test_round2_runs.py.
"""

from __future__ import annotations

import fcntl
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import evaluate as evaluate_cli
from kd_jax import predict
from kd_jax.data import fingerprint
from kd_jax.data import user_data
from kd_jax.evaluators import retrieval_augmented
from kd_jax.metrics import fidelity
from kd_jax.train import build
from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import choices
from kd_jax.train import config_references
from kd_jax.train import config_validation
from kd_jax.train import preflight
from kd_jax.train import pretrained_teachers
from kd_jax.train import staged_config
from kd_jax.train import workdir_config
from kd_jax.train import workdir_lock
from tests.train import helpers

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CASES = {}


def case(name, error, match):
  """Registers `function(tmp_path)` as a case that must raise `error` matching `match`."""

  def register(function):
    CASES[name] = (function, error, match)
    return function

  return register


# --- Data identity (item 1) ---------------------------------------------------------------------


def _csv(tmp_path, rows=8, extra=""):
  path = tmp_path / "reviews.csv"
  lines = ["f0,f1,label"] + [f"{i},{i % 3},{i % 2}" for i in range(rows)]
  path.write_text("\n".join(lines) + extra + "\n")
  return path


def _csv_run(tmp_path):
  """A workdir started on reviews.csv (config.json and data.json as the loop writes them)."""
  path = _csv(tmp_path)
  config = config_validation.validate(
      helpers.tiny_config(
          dataset=f"csv:{path}?features=f*&split=random", input_key="features", num_classes=2
      )
  )
  workdir = str(tmp_path / "run")
  workdir_config.save(config, workdir)
  return config, workdir, path


@case("data/csv_edited_between_resumes", ValueError, r"reviews.csv changed since the run in \S+")
def _csv_edited(tmp_path):
  config, workdir, path = _csv_run(tmp_path)
  path.write_text(path.read_text().replace("7,1,1", "7,1,0"))
  workdir_config.check_same(config, workdir)


@case("data/csv_grown_between_resumes", ValueError, r"\(sha256 \w+… -> \w+…, \d+ -> \d+ bytes\)")
def _csv_grown(tmp_path):
  config, workdir, path = _csv_run(tmp_path)
  with open(path, "a") as f:
    f.write("8,2,0\n")
  workdir_config.check_same(config, workdir)


@case(
    "data/csv_deleted", ValueError, r"reviews.csv, which the run in \S+ was trained on, no longer"
)
def _csv_deleted(tmp_path):
  config, workdir, path = _csv_run(tmp_path)
  path.unlink()
  workdir_config.check_same(config, workdir)


@case(
    "data/teacher_trained_on_other_content",
    ValueError,
    r"reviews.csv changed since teachers\[0\] \(\S+teacher\) was trained on it",
)
def _teacher_other_content(tmp_path):
  path = _csv(tmp_path)
  teacher = config_validation.validate(
      helpers.tiny_config(dataset=f"csv:{path}?features=f*", input_key="features", num_classes=2)
  )
  workdir_config.save(teacher, str(tmp_path / "teacher"))
  path.write_text(path.read_text() + "9,0,1\n")
  # The student reads the same file with other options: the same file, compared.
  student = helpers.tiny_config(
      dataset=f"csv:{path}?features=f0,f1", input_key="features", num_classes=2
  )
  workdir_config.check_data(
      student, str(tmp_path / "teacher"), where=f"teachers[0] ({tmp_path / 'teacher'})"
  )


def _registered_run(tmp_path, size):
  user_data.register_source(
      "round2_digits",
      lambda split, data_dir=None, manual_dir=None: helpers.Subset(
          helpers.mnist_small(split), size
      ),
  )
  config = config_validation.validate(helpers.tiny_config(dataset="round2_digits"))
  workdir = str(tmp_path / "run")
  if size == 100:
    workdir_config.save(config, workdir)
  return config, workdir


@case(
    "data/registered_source_resized",
    ValueError,
    r"dataset 'round2_digits' split 'test' has 90 examples here but had 100 when the run in",
)
def _registered_resized(tmp_path):
  _registered_run(tmp_path, 100)
  config, workdir = _registered_run(tmp_path, 90)
  workdir_config.check_same(config, workdir)


@case(
    "data/tfds_version_changed",
    ValueError,
    r"dataset 'mnist5k' is version 1.1.0 here but the run in /w was trained on version 1.0.0",
)
def _tfds_version(tmp_path):
  del tmp_path
  saved = {"dataset": "mnist5k", "name": "mnist5k/1.0.0", "version": "1.0.0", "splits": {}}
  now = dict(saved, version="1.1.0")
  raise ValueError(fingerprint.difference(saved, now, where="the run in /w"))


@case(
    "data/tfds_split_resized",
    ValueError,
    r"dataset 'mnist5k' split 'train' has 4000 examples here but had 5000 when",
)
def _tfds_split(tmp_path):
  del tmp_path
  saved = {"dataset": "mnist5k", "version": "1.0.0", "splits": {"test": 10, "train": 5000}}
  now = dict(saved, splits={"test": 10, "train": 4000})
  raise ValueError(fingerprint.difference(saved, now, where="the run in /w"))


# --- Config references (item 2) -----------------------------------------------------------------


def _shared_reference_config():
  c = ml_collections.ConfigDict({"settings": {"steps": 40}, "stages": {"teacher": {}}})
  steps = c.settings.get_ref("steps")
  c.stages.teacher.total_steps = steps
  c.stages.teacher.checkpoint_every = steps
  return c


@case(
    "config/override_of_a_shared_reference",
    ValueError,
    r"--config.stages.teacher.checkpoint_every would also change settings.steps, "
    r"stages.teacher.total_steps",
)
def _shared_override(tmp_path):
  del tmp_path
  config_references.check_overrides(_shared_reference_config(), ["stages.teacher.checkpoint_every"])


# --- Pretrained teachers (item 3) ---------------------------------------------------------------


class HeadedCNN(nn.Module):
  """A conv body and a `classifier` head, like kd_jax's models."""

  num_classes: int = 10
  loads: str = "body"  # what load_pretrained replaces: "body", "head", "nothing", "all"

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    x = nn.relu(nn.Conv(4, (3, 3), strides=(4, 4))(x)).reshape(x.shape[0], -1)
    embedding = nn.Dense(8)(x)
    return {
        "logits": nn.Dense(self.num_classes, name="classifier")(embedding),
        "embedding": embedding,
    }

  def load_pretrained(self, variables):
    trained = self.init(jax.random.key(7), jnp.zeros((1, 28, 28, 1)), train=False)["params"]
    keep = {"body": ("classifier",), "head": ("Conv_0", "Dense_0"), "nothing": tuple(trained)}
    keep = keep.get(self.loads, ())
    params = {k: variables["params"][k] if k in keep else trained[k] for k in trained}
    return {**variables, "params": params}


def _pretrained_load(loads, method="vanilla_kd"):
  spec = ml_collections.ConfigDict(
      {
          "model": "tests.reliability.test_bad_inputs_round2:HeadedCNN",
          "model_kwargs": {"loads": loads},
          "pretrained": True,
      }
  )
  config = helpers.tiny_config(method=ml_collections.ConfigDict({"name": method}))
  module = HeadedCNN(loads=loads)
  initial = module.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)), train=False)
  return pretrained_teachers.load(config, 0, spec, module, initial)


@case(
    "teacher/pretrained_random_head_for_logit_kd",
    ValueError,
    r"teachers\[0\] \(\S+HeadedCNN \{'loads': 'body'\}\) is pretrained=True but its classifier "
    r"head is new and random .* method 'vanilla_kd' distils the teacher's logits",
)
def _random_head(tmp_path):
  del tmp_path
  _pretrained_load("body")


@case(
    "teacher/pretrained_random_body",
    ValueError,
    r"load_pretrained leaves 2 of 3 parameter module\(s\) at their random init "
    r"\(e.g. params\['Conv_0'\]\)",
)
def _random_body(tmp_path):
  del tmp_path
  _pretrained_load("head", method="crd")


@case(
    "teacher/pretrained_loads_nothing",
    ValueError,
    r"is pretrained=True but its load_pretrained returned the random init unchanged: a random",
)
def _loads_nothing(tmp_path):
  del tmp_path
  _pretrained_load("nothing")


def _pretrained_bert_config(model_kwargs, model="bert_classifier"):
  config = helpers.tiny_config(method=ml_collections.ConfigDict({"name": "vanilla_kd"}))
  config.teachers = (
      ml_collections.ConfigDict({"model": model, "model_kwargs": model_kwargs, "pretrained": True}),
  )
  return config_validation.validate(config)


@case(
    "teacher/pretrained_bert_from_scratch",
    ValueError,
    r"teachers\[0\] is pretrained=True but its model_kwargs.init_from='scratch' builds it with "
    r"random weights",
)
def _bert_scratch(tmp_path):
  del tmp_path
  kwargs = dict(init_from="scratch", num_layers=1, hidden_size=8, num_heads=2, intermediate_size=8)
  preflight.check_resolvable(_pretrained_bert_config(kwargs), name="stage 'student'")


@case(
    "teacher/pretrained_model_with_pretrained_false",
    ValueError,
    r"stage 'student': teachers\[0\] is pretrained=True but its model_kwargs.pretrained=False",
)
def _pretrained_false(tmp_path):
  del tmp_path
  config = _pretrained_bert_config({"pretrained": False, "num_classes": None}, model="minilm_l6")
  preflight.check_resolvable(config, name="stage 'student'")


# --- Choices (item 4) ---------------------------------------------------------------------------


def _candidates(tmp_path, scores):
  spec = choices.best_validation_accuracy(tuple(scores))
  for name, score in scores.items():
    (tmp_path / name).mkdir()
    results = {"evals": {"validation": {"accuracy": score}}}
    (tmp_path / name / "results.json").write_text(json.dumps(results))
    (tmp_path / name / "config.json").write_text(json.dumps({"method": {"name": name}}))
  return spec


@case(
    "choices/every_candidate_diverged",
    ValueError,
    r"stage 'best': no candidate has a finite validation.accuracy to choose on",
)
def _all_nan(tmp_path):
  spec = _candidates(tmp_path, {"a": float("nan"), "b": float("nan")})
  choices.choose(spec, str(tmp_path), "best")


# --- ScaNN (item 9) -----------------------------------------------------------------------------


@case(
    "retrieval/scann_recall_below_its_floor",
    ValueError,
    r"ScaNN's recall@4 is 0\.\d+ against exact search, below scann_min_recall=0.9 \(64 leaves, "
    r"1 searched",
)
def _scann_floor(tmp_path):
  del tmp_path
  rng = np.random.default_rng(0)
  database = rng.normal(size=(512, 8)).astype(np.float32)
  queries = rng.normal(size=(32, 8)).astype(np.float32)
  soft = jnp.full((512, 3), 1 / 3)
  evaluator = retrieval_augmented.RetrievalAugmented(
      scann=True, scann_num_leaves=64, scann_leaves_to_search=1, scann_reorder=4
  )
  # pylint: disable-next=protected-access
  evaluator._scann(
      queries, jnp.zeros((32, 3)), np.zeros(32, int), database, soft, k=4, temperature=1.0, beta=0.5
  )


@case(
    "retrieval/scann_min_recall_out_of_range", ValueError, r"scann_min_recall must be in \[0, 1\]"
)
def _scann_floor_range(tmp_path):
  del tmp_path
  retrieval_augmented.RetrievalAugmented(scann_min_recall=1.5)


# --- Checkpoints and workdir files (item 7) -----------------------------------------------------


def _tiny_state(step, *, poison=False):
  variables = helpers.TinyCNN(width=8).init(
      jax.random.key(0), jnp.zeros((1, 28, 28, 1)), train=False
  )
  params = variables["params"]
  if poison:
    params = jax.tree.map(lambda p: p.at[(0,) * p.ndim].set(jnp.nan), params)
  return {
      "step": jnp.asarray(step, jnp.int32),
      "params": {"student": params, "method": {}},
      "model_state": {"batch_stats": variables["batch_stats"]},
      "opt_state": (),
      "method_state": {},
      "rng": jnp.zeros(2, jnp.uint32),
  }


@case(
    "checkpoint/nan_state_with_valid_checksums",
    RuntimeError,
    r"None of the checkpoints \[8\] in \S+ could be restored",
)
def _nan_checkpoint(tmp_path):
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path / "run"), async_save=False)
  checkpointer.save(8, _tiny_state(8, poison=True), {})
  checkpointer.restore_latest(_tiny_state(0))


def _truncate(path):
  text = path.read_text()
  path.write_text(text[: len(text) // 2])


@case(
    "workdir/truncated_config_json_on_resume",
    ValueError,
    r"\S+/run/config.json is not valid JSON \(.*perhaps truncated",
)
def _truncated_resume(tmp_path):
  config = config_validation.validate(helpers.tiny_config())
  workdir_config.save(config, str(tmp_path / "run"))
  _truncate(tmp_path / "run" / "config.json")
  workdir_config.check_same(config, str(tmp_path / "run"))


@case(
    "workdir/truncated_config_json_of_a_teacher",
    ValueError,
    r"\S+/teacher/config.json is not valid JSON",
)
def _truncated_teacher(tmp_path):
  config = config_validation.validate(helpers.tiny_config())
  workdir_config.save(config, str(tmp_path / "teacher"))
  _truncate(tmp_path / "teacher" / "config.json")
  student = helpers.tiny_config(method=ml_collections.ConfigDict({"name": "vanilla_kd"}))
  student.teachers = (
      ml_collections.ConfigDict(
          {"model": "tests.train.helpers:TinyCNN", "workdir": str(tmp_path / "teacher")}
      ),
  )
  build.build_teachers(config_validation.validate(student), jnp.zeros((1, 28, 28, 1)))


@case("workdir/truncated_config_json_for_predict", ValueError, r"\S+/run/config.json is not valid")
def _truncated_predict(tmp_path):
  config = config_validation.validate(helpers.tiny_config())
  workdir_config.save(config, str(tmp_path / "run"))
  _truncate(tmp_path / "run" / "config.json")
  predict.load(str(tmp_path / "run"))


# --- Set-level metrics of too few examples (item 8) ---------------------------------------------


@case("metric/cka_of_one_example", ValueError, r"linear_cka needs at least 2 examples .* got 1")
def _cka_one(tmp_path):
  del tmp_path
  fidelity.linear_cka(jnp.ones((1, 4)), jnp.arange(3.0)[None])


@case("metric/cka_masked_to_one_example", ValueError, r"linear_cka needs at least 2 .* got 1")
def _cka_masked(tmp_path):
  del tmp_path
  x = jax.random.normal(jax.random.key(0), (5, 4))
  fidelity.linear_cka(x, x, mask=jnp.array([False, True, False, False, False]))


@case("metric/ece_of_zero_examples", ValueError, r"expected_calibration_error needs at least 1 ")
def _ece_empty(tmp_path):
  del tmp_path
  fidelity.expected_calibration_error(jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32))


@case("metric/ece_all_masked", ValueError, r"expected_calibration_error needs at least 1 .* got 0")
def _ece_masked(tmp_path):
  del tmp_path
  fidelity.expected_calibration_error(
      jnp.zeros((2, 3)), jnp.array([0, 1]), mask=jnp.array([False, False])
  )


# --- Predictions on new inputs (item 6) ---------------------------------------------------------


def _finished_run(tmp_path, *, results=True):
  """A finished-looking TinyCNN run on MNIST digits: config, data.json, a checkpoint, results."""
  workdir = str(tmp_path / "run")
  config = config_validation.validate(helpers.tiny_config(total_steps=4))
  batch = {"image": np.stack([helpers.mnist_small("train")[i]["image"] for i in range(8)])}
  workdir_config.save(config, workdir, example=batch)
  checkpointer = checkpoint_lib.Checkpointer(workdir, async_save=False)
  checkpointer.save(4, _tiny_state(4), {})
  checkpointer.close()
  if results:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump({"step": 4, "accuracy": 0.1}, f)
  return workdir


def _digits(n=3):
  return [helpers.mnist_small("test")[i]["image"] for i in range(n)]


@case(
    "predict/float_images_of_0_to_255",
    ValueError,
    r"inputs \(float32\) range over \[0, 255\] as the model sees them, but \S+ was trained on "
    r"values in \[0, 1\] \(uint8 data",
)
def _float_255(tmp_path):
  model = predict.load(_finished_run(tmp_path))
  model.predict([image.astype(np.float32) for image in _digits()])


@case(
    "predict/rgb_image_for_a_grayscale_model",
    ValueError,
    r"inputs have shape \[28, 28, 3\] after the run's eval_transforms, but \S+ was trained on "
    r"'image' of shape \[28, 28, 1\] \(uint8\)",
)
def _rgb(tmp_path):
  model = predict.load(_finished_run(tmp_path))
  model.predict([np.repeat(image, 3, axis=-1) for image in _digits()])


@case("predict/32x32_for_28x28", ValueError, r"inputs have shape \[32, 32, 1\] .* \[28, 28, 1\]")
def _wrong_size(tmp_path):
  model = predict.load(_finished_run(tmp_path))
  model.predict([np.pad(image, ((2, 2), (2, 2), (0, 0))) for image in _digits()])


@case("predict/unfinished_run", RuntimeError, r"\S+/run holds an unfinished run \(no results.json")
def _unfinished(tmp_path):
  predict.load(_finished_run(tmp_path, results=False))


@case("predict/run_still_training", RuntimeError, r"\S+/run is still training \(pid 4242 on host")
def _still_training(tmp_path):
  workdir = _finished_run(tmp_path)
  path = os.path.join(workdir, workdir_lock.LOCK_NAME)
  with open(path, "w") as f:
    json.dump({"pid": 4242, "host": "elsewhere", "started": "2026-01-01T00:00:00"}, f)
  with open(path) as other:  # another open file description: "another process" to flock
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    predict.load(workdir)


@case("evaluate/unfinished_run", RuntimeError, r"holds an unfinished run")
def _evaluate_unfinished(tmp_path):
  evaluate_cli.evaluate_and_save(_finished_run(tmp_path, results=False), "test")


# --- Late checks moved to preflight (item 10) ---------------------------------------------------


def _staged(**student_overrides):
  teacher = helpers.tiny_config(total_steps=2)
  student = helpers.tiny_config(total_steps=2, **student_overrides)
  return ml_collections.ConfigDict(
      {"stages": {"teacher": teacher, "student": student}, "stage_order": ("teacher", "student")}
  )


@case(
    "preflight/batch_dependent_method_with_accumulation",
    ValueError,
    r"stage 'student': method 'rkd' has a batch-dependent loss .* grad_accum_steps=2",
)
def _late_accumulation(tmp_path):
  del tmp_path
  config = _staged(grad_accum_steps=2, method=ml_collections.ConfigDict({"name": "rkd"}))
  config.stages.student.teachers = (
      ml_collections.ConfigDict(
          {
              "model": "tests.train.helpers:TinyCNN",
              "model_kwargs": {"width": 8},
              "workdir": "teacher",
          }
      ),
  )
  staged_config.validate_stages(config)


@case(
    "preflight/teacher_cache_over_random_transforms",
    ValueError,
    r"stage 'student': teacher_cache=True needs deterministic train transforms",
)
def _late_cache(tmp_path):
  del tmp_path
  config = _staged(
      teacher_cache=True,
      train_transforms=("PadCropFlip",),
      method=ml_collections.ConfigDict({"name": "vanilla_kd"}),
  )
  config.stages.student.teachers = (
      ml_collections.ConfigDict(
          {
              "model": "tests.train.helpers:TinyCNN",
              "model_kwargs": {"width": 8},
              "workdir": "teacher",
          }
      ),
  )
  staged_config.validate_stages(config)


@case(
    "preflight/evaluator_option_out_of_its_domain",
    ValueError,
    r"stage 'student': evals.val_reaug: retrieval_augmented: betas must be a non-empty grid",
)
def _late_evaluator(tmp_path):
  del tmp_path
  config = _staged()
  config.stages.student.evals = ml_collections.ConfigDict(
      {"val_reaug": {"kind": "retrieval_augmented", "split": "validation", "betas": (2.0,)}}
  )
  config.stages.student.validation_split = "validation"
  staged_config.validate_stages(config)


@case(
    "preflight/finished_teacher_of_another_network",
    ValueError,
    r"stage 'student': teachers\[0\] is declared as \{'model': 'tests.train.helpers:TinyCNN', "
    r"'model_kwargs': \{'width': 4\}",
)
def _late_teacher_network(tmp_path):
  teacher = config_validation.validate(helpers.tiny_config())
  workdir_config.save(teacher, str(tmp_path / "teacher"))
  (tmp_path / "teacher" / "checkpoints").mkdir()
  config = _staged(method=ml_collections.ConfigDict({"name": "vanilla_kd"}))
  config.stages.student.teachers = (
      ml_collections.ConfigDict(
          {
              "model": "tests.train.helpers:TinyCNN",
              "model_kwargs": {"width": 4},
              "workdir": str(tmp_path / "teacher"),
          }
      ),
  )
  staged_config.validate_stages(config)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_by_name(name, tmp_path):
  function, error, match = CASES[name]
  with pytest.raises(error, match=match):
    function(tmp_path)


def test_the_matrix_grew_by_at_least_25_cases():
  assert len(CASES) >= 25, len(CASES)
