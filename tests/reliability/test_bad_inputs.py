"""The bad-input matrix: what a hostile or careless user feeds the library, and the one clear line
each mistake must produce (issue 16, item 7).

Every case builds one bad input, calls the public entry point a user would call, and asserts the
exception type and that the message names the problem (the key, the value, the file). Cases are
in-process and fast; the command-line cases (one FATAL line) are in test_cli_errors.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from kd_jax import retrieval
from kd_jax.losses import logits as logit_losses
from kd_jax.metrics import classification
from kd_jax.models import get_model
from kd_jax.train import build
from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import config_validation
from kd_jax.train import guards
from kd_jax.train import integrity
from kd_jax.train import staged_config
from kd_jax.train import workdir_lock
from tests.train import corruption
from tests.train import helpers

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CASES = {}


def case(name, error, match):
  """Registers `function(tmp_path)` as a case that must raise `error` matching `match`."""

  def register(function):
    CASES[name] = (function, error, match)
    return function

  return register


# --- Config: every hyper-parameter with a domain ---------------------------------------------


def _config_case(name, edit, match):
  def function(tmp_path):
    del tmp_path
    c = helpers.tiny_config()
    edit(c)
    config_validation.validate(c)

  CASES[f"config/{name}"] = (function, ValueError, match)


def _set(path, value):
  def edit(c):
    node = c
    *parents, leaf = path.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value

  return edit


for _name, _path, _value, _match in [
    (
        "negative_learning_rate",
        "optimizer.learning_rate",
        -0.1,
        r"optimizer.learning_rate must be a finite number > 0, got -0.1",
    ),
    (
        "zero_learning_rate",
        "optimizer.learning_rate",
        0.0,
        r"optimizer.learning_rate must be a finite number > 0, got 0.0",
    ),
    (
        "nan_learning_rate",
        "optimizer.learning_rate",
        float("nan"),
        r"optimizer.learning_rate must be a finite number > 0, got nan",
    ),
    ("negative_momentum", "optimizer.momentum", -0.5, r"optimizer.momentum must be in \[0, 1\)"),
    ("momentum_one", "optimizer.momentum", 1.0, r"optimizer.momentum .* got 1.0"),
    (
        "negative_warmup",
        "optimizer.warmup_steps",
        -1,
        r"optimizer.warmup_steps must be an integer in \[0, total_steps=12\), got -1",
    ),
    ("warmup_past_the_end", "optimizer.warmup_steps", 12, r"optimizer.warmup_steps .* got 12"),
    (
        "negative_weight_decay",
        "optimizer.weight_decay",
        -1e-4,
        r"optimizer.weight_decay must be a finite number >= 0, got -0.0001",
    ),
    (
        "negative_end_learning_rate",
        "optimizer.end_learning_rate",
        -1.0,
        r"optimizer.end_learning_rate must be a finite number >= 0, got -1.0",
    ),
    ("unknown_optimizer", "optimizer.name", "rmsprop", r"optimizer.name .* got 'rmsprop'"),
    ("unknown_schedule", "optimizer.schedule", "linear", r"optimizer.schedule .* got 'linear'"),
    ("nesterov_without_momentum", "optimizer.momentum", 0.0, r"nesterov=True needs"),
    ("negative_eval_every", "eval_every", -1, r"eval_every must be an integer >= 0.*got -1"),
    ("zero_batch_size", "batch_size", 0, r"batch_size must be a positive integer, got 0"),
    ("zero_classes", "num_classes", 0, r"num_classes must be a positive integer, got 0"),
    ("zero_max_to_keep", "max_to_keep", 0, r"max_to_keep must be a positive integer, got 0"),
    ("float16_compute", "compute_dtype", "float16", r"compute_dtype must be .* got 'float16'"),
    ("empty_input_key", "input_key", "", r"input_key must name a batch entry"),
    (
        "accumulation_not_dividing",
        "grad_accum_steps",
        5,
        r"batch_size=32 is not divisible by grad_accum_steps=5",
    ),
]:
  if _name == "nesterov_without_momentum":
    _config_case(
        _name,
        lambda c: (_set("optimizer.momentum", 0.0)(c), _set("optimizer.nesterov", True)(c)),
        _match,
    )
  else:
    _config_case(_name, _set(_path, _value), _match)


@case("config/unknown_key", ValueError, r"Unknown key\(s\) in config: \['lerning_rate'\]")
def _unknown_key(tmp_path):
  del tmp_path
  c = helpers.tiny_config()
  c.lerning_rate = 0.1
  config_validation.validate(c)


@case(
    "config/teacher_without_workdir",
    ValueError,
    r"teachers\[0\] needs exactly one of a workdir .*got workdir=None",
)
def _teacher_without_workdir(tmp_path):
  del tmp_path
  c = helpers.tiny_config(method=ml_collections.ConfigDict({"name": "vanilla_kd"}))
  c.teachers = (ml_collections.ConfigDict({"model": "resnet8"}),)
  config_validation.validate(c)


@case("config/stage_order_incomplete", ValueError, r"stage_order \['a'\] must list every stage")
def _stage_order_incomplete(tmp_path):
  del tmp_path
  config = ml_collections.ConfigDict(
      {
          "stages": {"a": helpers.tiny_config().to_dict(), "b": helpers.tiny_config().to_dict()},
          "stage_order": ("a",),
      }
  )
  staged_config.validate_stages(config)


# --- Data and labels ---------------------------------------------------------------------------


@case(
    "data/negative_label_in_batch",
    ValueError,
    r"train batch of step 3: label -1 is outside \[0, num_classes=10\)",
)
def _negative_label(tmp_path):
  del tmp_path
  guards.check_labels({"label": np.array([1, -1, 2])}, 10, "train batch of step 3")


@case("data/label_equal_to_num_classes", ValueError, r"label 10 is outside \[0, num_classes=10\)")
def _label_too_large(tmp_path):
  del tmp_path
  guards.check_labels({"label": np.array([10, 0])}, 10, "train batch")


@case("data/float_labels", ValueError, r"labels must be integer class ids, got dtype float32")
def _float_labels(tmp_path):
  del tmp_path
  guards.check_labels({"label": np.array([1.0, 2.0], np.float32)}, 10, "train batch")


@case("data/unknown_dataset", KeyError, r"Unknown dataset 'no_such_dataset'")
def _unknown_dataset(tmp_path):
  del tmp_path
  build.get_source(helpers.tiny_config(dataset="no_such_dataset"), "train")


@case("data/custom_source_not_importable", ValueError, r"Cannot import 'no_such_module:source'")
def _custom_source_not_importable(tmp_path):
  del tmp_path
  build.get_source(helpers.tiny_config(dataset="no_such_module:source"), "train")


@case("data/unknown_batch_transform", ValueError, r"Unknown batch transform 'mixupp'")
def _unknown_batch_transform(tmp_path):
  del tmp_path
  build.batch_transform(helpers.tiny_config(batch_transforms=("mixupp",)))


@case("model/unknown_name", KeyError, r"unknown model 'resnet9'")
def _unknown_model(tmp_path):
  del tmp_path
  get_model("resnet9")


@case("model/zero_classes", ValueError, r"num_classes must be a positive integer .* got 0")
def _model_zero_classes(tmp_path):
  del tmp_path
  get_model("resnet8", num_classes=0)


# --- Losses and metrics ------------------------------------------------------------------------

_LOGITS = jnp.zeros((3, 4))


@case(
    "loss/cross_entropy_label_minus_one",
    ValueError,
    r"labels must be class ids in \[0, 4\) .* got values from -1 to 2",
)
def _ce_minus_one(tmp_path):
  del tmp_path
  logit_losses.cross_entropy(_LOGITS, jnp.array([0, -1, 2]))


@case(
    "loss/cross_entropy_label_equal_to_classes",
    ValueError,
    r"labels must be class ids in \[0, 4\) .* from 0 to 4",
)
def _ce_too_large(tmp_path):
  del tmp_path
  logit_losses.cross_entropy(_LOGITS, np.array([0, 4, 1]))


@case("metric/accuracy_label_out_of_range", ValueError, r"labels must be class ids in \[0, 4\)")
def _accuracy_out_of_range(tmp_path):
  del tmp_path
  classification.accuracy(_LOGITS, jnp.array([5, 0, 1]))


@case("loss/labels_wrong_shape", ValueError, r"labels have shape \(2,\) but logits have shape")
def _labels_wrong_shape(tmp_path):
  del tmp_path
  logit_losses.cross_entropy(_LOGITS, jnp.array([0, 1]))


@case("loss/zero_temperature", ValueError, r"temperature must be positive, got 0")
def _zero_temperature(tmp_path):
  del tmp_path
  logit_losses.hinton_kd(_LOGITS, _LOGITS, temperature=0)


@case("loss/label_smoothing_one", ValueError, r"label_smoothing must be in \[0, 1\), got 1.0")
def _label_smoothing_one(tmp_path):
  del tmp_path
  logit_losses.cross_entropy(_LOGITS, jnp.array([0, 1, 2]), label_smoothing=1.0)


@case(
    "loss/kd_shape_mismatch",
    ValueError,
    r"student_logits has shape \(3, 4\) but " r"teacher_logits has shape \(3, 5\)",
)
def _kd_shape_mismatch(tmp_path):
  del tmp_path
  logit_losses.hinton_kd(_LOGITS, jnp.zeros((3, 5)), temperature=2.0)


# --- Knowledge bases ---------------------------------------------------------------------------


def _kb_arrays():
  rng = np.random.default_rng(0)
  soft = rng.random((6, 3)).astype(np.float32)
  return (
      rng.normal(size=(6, 5)).astype(np.float32),
      soft / soft.sum(1, keepdims=True),
      np.array([0, 1, 2, 0, 1, 2]),
  )


def _kb_content_case(name, edit, match):
  def function(tmp_path):
    del tmp_path
    embeddings, soft, labels = _kb_arrays()
    embeddings, soft, labels = edit(embeddings, soft, labels)
    retrieval.KnowledgeBase(embeddings, soft, labels, "teacher@1")

  CASES[f"kb/{name}"] = (function, retrieval.KnowledgeBaseError, match)


def _nan_embedding(e, s, l):
  e[2, 1] = np.nan
  return e, s, l


def _negative_soft_label(e, s, l):
  s[4] = [1.5, -0.5, 0.0]
  return e, s, l


_kb_content_case("empty", lambda e, s, l: (e[:0], s[:0], l[:0]), r"it is empty \(0 entries\)")
_kb_content_case(
    "nan_embedding", _nan_embedding, r"1 of 6 embeddings are not finite .* first at entry 2"
)
_kb_content_case(
    "negative_soft_label",
    _negative_soft_label,
    r"soft-label rows have negative or non-finite values, first at entry 4",
)
_kb_content_case(
    "unnormalised_soft_labels",
    lambda e, s, l: (e, s * 2, l),
    r"6 of 6 soft-label rows do not sum to 1",
)
_kb_content_case(
    "label_out_of_range",
    lambda e, s, l: (e, s, l + 1),
    r"2 of 6 labels are outside \[0, num_classes=3\) \(entry 2 has label 3\)",
)
_kb_content_case(
    "shapes_disagree",
    lambda e, s, l: (e, s[:5], l),
    r"arrays disagree: embeddings \(6, 5\), soft_labels \(5, 3\)",
)


def _saved_kb(tmp_path):
  directory = str(tmp_path / "kb")
  retrieval.save_knowledge_base(retrieval.KnowledgeBase(*_kb_arrays(), "teacher@1"), directory)
  return directory, os.path.join(directory, "manifest.json")


def _edit_manifest(tmp_path, edit):
  directory, path = _saved_kb(tmp_path)
  with open(path) as f:
    manifest = json.load(f)
  edit(manifest)
  with open(path, "w") as f:
    json.dump(manifest, f)
  retrieval.load_knowledge_base(directory)


@case(
    "kb/manifest_missing_field",
    retrieval.KnowledgeBaseError,
    r"manifest.json lacks the field\(s\) \['teacher_id'\]",
)
def _manifest_missing_field(tmp_path):
  _edit_manifest(tmp_path, lambda m: m.pop("teacher_id"))


@case(
    "kb/manifest_disagrees_with_arrays",
    retrieval.KnowledgeBaseError,
    r"arrays disagree with the manifest: embedding_dim 7 in the manifest vs 5 in the arrays",
)
def _manifest_disagrees(tmp_path):
  _edit_manifest(tmp_path, lambda m: m.update(embedding_dim=7))


@case(
    "kb/truncated_manifest",
    retrieval.KnowledgeBaseError,
    r"kb/manifest.json is not valid JSON .* truncated",
)
def _truncated_manifest(tmp_path):
  directory, path = _saved_kb(tmp_path)
  with open(path) as f:
    text = f.read()
  with open(path, "w") as f:
    f.write(text[: len(text) // 2])
  retrieval.load_knowledge_base(directory)


@case(
    "kb/corrupt_arrays",
    retrieval.KnowledgeBaseError,
    r"knowledge_base.safetensors does not match the checksum",
)
def _corrupt_arrays(tmp_path):
  directory, _ = _saved_kb(tmp_path)
  path = os.path.join(directory, "knowledge_base.safetensors")
  data = bytearray(open(path, "rb").read())
  data[-3] ^= 0xFF
  open(path, "wb").write(bytes(data))
  retrieval.load_knowledge_base(directory)


# --- Checkpoints, teachers, workdirs -----------------------------------------------------------


def _teacher_state():
  kernel = jax.random.normal(jax.random.key(0), (64, 64))
  return {
      "step": jnp.asarray(5, jnp.int32),
      "params": {"student": {"Dense_0": {"kernel": kernel}}, "method": {}},
      "model_state": {},
      "opt_state": (),
      "method_state": {},
      "rng": jnp.zeros(2, jnp.uint32),
  }


def _saved_run(tmp_path):
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path / "run"), async_save=False)
  checkpointer.save(5, _teacher_state(), {"position": 5})
  checkpointer.close()
  return tmp_path / "run"


def _data_files(step_dir):
  return [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]


@case(
    "checkpoint/flipped_teacher_params",
    integrity.CorruptCheckpointError,
    r"teacher's checkpoint step 5 .*checksum mismatch in 1 of 1 arrays "
    r"\(params.student.Dense_0.kernel\)",
)
def _flipped_teacher(tmp_path):
  run = _saved_run(tmp_path)
  corruption.flip_silently(run / "checkpoints" / "5")
  checkpoint_lib.restore_exported_variables(str(run))


@case(
    "checkpoint/truncated_teacher",
    integrity.CorruptCheckpointError,
    r"Cannot read the teacher's checkpoint step 5 in \S+",
)
def _truncated_teacher(tmp_path):
  run = _saved_run(tmp_path)
  for path in _data_files(run / "checkpoints" / "5"):
    path.write_bytes(b"")
  checkpoint_lib.restore_exported_variables(str(run))


@case(
    "checkpoint/teacher_never_trained",
    FileNotFoundError,
    r"No checkpoints in \S+: train the teacher first",
)
def _teacher_never_trained(tmp_path):
  checkpoint_lib.restore_exported_variables(str(tmp_path / "empty"))


@case(
    "checkpoint/checksums_record_replaced",
    integrity.CorruptCheckpointError,
    r"checksum mismatch in 1 of 1 arrays",
)
def _checksums_replaced(tmp_path):
  run = _saved_run(tmp_path)
  path = run / "checkpoints" / "5" / "checksums" / "metadata"
  record = json.loads(path.read_text())
  record["arrays"] = {name: "0" * 32 for name in record["arrays"]}
  path.write_text(json.dumps(record))
  checkpoint_lib.restore_exported_variables(str(run))


@case(
    "teacher/nan_params",
    FloatingPointError,
    r"teachers\[0\] \(/runs/t\) has non-finite values .* in 1 array\(s\): params.Dense_0.bias",
)
def _teacher_nan(tmp_path):
  del tmp_path
  variables = {
      "params": {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.array([0.0, jnp.nan])}}
  }
  guards.check_finite_variables(variables, "teachers[0] (/runs/t)")


@case(
    "teacher/architecture_mismatch",
    ValueError,
    r"teachers\[0\] \(tests.train.helpers:TinyCNN \{'width': 8\}\) does not match the "
    r"checkpoint in /runs/t: \d+ parameter\(s\) differ",
)
def _teacher_mismatch(tmp_path):
  del tmp_path
  x = jnp.zeros((1, 28, 28, 1))
  variables = helpers.TinyCNN(width=4).init(jax.random.key(0), x, train=False)
  config = helpers.tiny_config(method=ml_collections.ConfigDict({"name": "vanilla_kd"}))
  config.teachers = (
      ml_collections.ConfigDict(
          {
              "model": "tests.train.helpers:TinyCNN",
              "model_kwargs": {"width": 8},
              "workdir": "/runs/t",
          }
      ),
  )
  build.check_teacher_shapes(config, [helpers.TinyCNN(width=8)], [variables], x)


@case(
    "workdir/held_by_another_run",
    workdir_lock.WorkdirBusyError,
    r"is in use by another run \(pid 4242 on host elsewhere, started 2026-01-01T00:00:00\)",
)
def _workdir_busy(tmp_path):
  # flock locks belong to an open file: a second open() here is "another run" to the lock.
  path = tmp_path / workdir_lock.LOCK_NAME
  path.write_text(json.dumps({"pid": 4242, "host": "elsewhere", "started": "2026-01-01T00:00:00"}))
  with open(path) as other:
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    workdir_lock.acquire(str(tmp_path))


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_by_name(name, tmp_path):
  function, error, match = CASES[name]
  with pytest.raises(error, match=match):
    function(tmp_path)


def test_the_matrix_is_large_enough():
  assert len(CASES) >= 40, len(CASES)


def test_valid_inputs_pass_the_same_checks(tmp_path):
  """The negative cases above mean something only if the valid versions are accepted."""
  config_validation.validate(helpers.tiny_config())
  guards.check_labels({"label": np.array([0, 9])}, 10, "batch")
  guards.check_labels({"label": np.array([0, -1]), "mask": np.array([True, False])}, 10, "eval")
  logit_losses.cross_entropy(_LOGITS, jnp.array([0, 3, 1]))
  retrieval.KnowledgeBase(*_kb_arrays(), "teacher@1")
  directory, _ = _saved_kb(tmp_path)
  retrieval.load_knowledge_base(directory)
  run = _saved_run(tmp_path)
  step, variables = checkpoint_lib.restore_exported_variables(str(run))
  assert step == 5
  np.testing.assert_array_equal(
      variables["params"]["Dense_0"]["kernel"],
      _teacher_state()["params"]["student"]["Dense_0"]["kernel"],
  )
  with workdir_lock.hold(str(tmp_path / "w")):
    assert json.loads((tmp_path / "w" / ".lock").read_text())["pid"] == os.getpid()
  shutil.rmtree(tmp_path / "w")
