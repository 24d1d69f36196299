"""Fail-fast configuration checks: unknown keys, inconsistent teacher/student/dataset settings."""

import ml_collections
import numpy as np
import pytest

from kd_jax.train import config_validation
from kd_jax.train import loop
from kd_jax.train import staged_config
from tests.train import helpers


def kd_config(**teacher):
  c = helpers.tiny_config(method=ml_collections.ConfigDict({"name": "vanilla_kd"}))
  c.teachers = (
      ml_collections.ConfigDict(
          {"model": "tests.train.helpers:TinyCNN", "workdir": "teacher", **teacher}
      ),
  )
  return c


def test_unknown_keys_are_named():
  c = helpers.tiny_config()
  c.lerning_rate = 0.1
  c.optimizer.momentun = 0.9
  with pytest.raises(
      ValueError, match=r"Unknown key\(s\) in config: \['lerning_rate', " r"'optimizer.momentun'\]"
  ):
    config_validation.validate(c)


def test_teacher_with_other_class_count_fails():
  with pytest.raises(ValueError, match=r"teachers\[0\].*num_classes=100.*num_classes=10"):
    config_validation.validate(kd_config(model_kwargs={"num_classes": 100}))


def test_teacher_spec_keys_are_checked():
  with pytest.raises(ValueError, match=r"teachers\[0\].*unknown \['path'\]"):
    config_validation.validate(kd_config(path="x"))


def test_distillation_without_teacher_fails():
  c = helpers.tiny_config(method=ml_collections.ConfigDict({"name": "vanilla_kd"}))
  with pytest.raises(ValueError, match="'vanilla_kd' distils from a teacher but config.teachers"):
    config_validation.validate(c)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("batch_size", 30, "not divisible by grad_accum_steps=4"),
        ("compute_dtype", "float16", "compute_dtype must be"),
        ("total_steps", -1, "total_steps must be an integer >= 0"),
    ],
)
def test_inconsistent_settings(key, value, message):
  c = helpers.tiny_config(grad_accum_steps=4)
  c[key] = value
  with pytest.raises(ValueError, match=message):
    config_validation.validate(c)


def staged(teacher_kwargs, order=("teacher", "student")):
  config = ml_collections.ConfigDict()
  config.stages = ml_collections.ConfigDict()
  config.stages.teacher = helpers.tiny_config()
  config.stages.student = kd_config(model_kwargs=teacher_kwargs)
  config.stage_order = order
  return config


def test_stages_check_teacher_against_its_stage_and_order():
  assert [name for name, _ in staged_config.validate_stages(staged({"width": 8}))] == [
      "teacher",
      "student",
  ]
  with pytest.raises(ValueError, match=r"does not match the run of stage 'teacher'.*width"):
    staged_config.validate_stages(staged({"width": 16}))
  mismatch = staged({"width": 8})
  mismatch.stages.teacher.num_classes = 5
  with pytest.raises(ValueError, match=r"stage 'teacher'.*num_classes 10 vs 5"):
    staged_config.validate_stages(mismatch)
  with pytest.raises(ValueError, match="runs later"):
    staged_config.validate_stages(staged({"width": 8}, order=("student", "teacher")))
  with pytest.raises(ValueError, match="must list every stage"):
    staged_config.validate_stages(staged({"width": 8}, order=("teacher",)))


def test_model_output_shape_is_checked_at_startup(tmp_path):
  c = helpers.tiny_config(model="tests.train.helpers:three_class_cnn")
  # Checked on a train batch (32), the batch `Method.init` sees.
  with pytest.raises(
      ValueError, match=r"logits of shape \(32, 3\), expected \(batch=32, " r"num_classes=10\)"
  ):
    loop.train_and_evaluate(c, str(tmp_path))
  assert not list(tmp_path.iterdir())  # a rejected config leaves nothing behind


def test_batch_transform_is_seeded_by_step():
  from kd_jax.train import build

  c = config_validation.validate(
      helpers.tiny_config(
          batch_transforms=(ml_collections.ConfigDict({"name": "mixup", "alpha": 1.0}),)
      )
  )
  apply = build.batch_transform(c)
  batch = {"image": np.arange(4 * 3, dtype=np.float32).reshape(4, 3), "label": np.arange(4)}
  first, again, other = apply(batch, 5), apply(batch, 5), apply(batch, 6)
  np.testing.assert_array_equal(first["image"], again["image"])
  assert not np.array_equal(first["image"], other["image"])
  lam, partner = first["mixup_lambda"][:, None], first["mixup_partner"]
  np.testing.assert_allclose(
      first["image"], lam * batch["image"] + (1 - lam) * batch["image"][partner], rtol=1e-6
  )


def test_unknown_transform_is_named():
  from kd_jax.train import build

  c = config_validation.validate(helpers.tiny_config(train_transforms=("PadCropFlipp",)))
  with pytest.raises(ValueError, match="Unknown transform 'PadCropFlipp'"):
    build.build_data(c)
