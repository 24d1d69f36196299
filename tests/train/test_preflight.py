"""Every stage is resolved (data, transforms, models, teachers) before the first one trains."""

import os

import ml_collections
import pytest

from kd_jax.train import staged_config
from kd_jax.train import stages
from tests.train import helpers


def two_stages(**student_overrides):
  config = ml_collections.ConfigDict()
  config.stages = ml_collections.ConfigDict()
  config.stages.teacher = helpers.tiny_config()
  student = helpers.tiny_config(method=ml_collections.ConfigDict({"name": "vanilla_kd"}))
  student.teachers = (
      ml_collections.ConfigDict(
          {
              "model": "tests.train.helpers:TinyCNN",
              "workdir": "teacher",
              "model_kwargs": {"width": 8},
          }
      ),
  )
  for key, value in student_overrides.items():
    student[key] = value
  config.stages.student = student
  config.stage_order = ("teacher", "student")
  return config


def test_a_typo_in_the_last_stage_fails_before_the_first_trains(tmp_path):
  with pytest.raises(
      ValueError,
      match=r"stage 'student': dataset 'mnist5kk', train_split="
      r"'train' does not resolve.*Unknown dataset 'mnist5kk'",
  ):
    stages.run(two_stages(dataset="mnist5kk"), str(tmp_path))
  assert not os.path.exists(tmp_path / "teacher")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"eval_split": "tset"}, r"eval_split='tset' does not resolve.*Bad split 'tset'"),
        ({"model": "tests.train.helpers:TinyCNNN"}, r"stage 'student': student: Cannot import"),
        ({"train_transforms": ("PadCropFlipp",)}, r"train_transforms: .*Unknown transform"),
        ({"input_key": "pixels"}, r"has keys \['image', 'label'\], not input_key 'pixels'"),
        ({"num_classes": 5, "model_kwargs": {"width": 8}}, r"num_classes"),
    ],
)
def test_each_kind_of_unresolvable_setting_is_named(overrides, message):
  with pytest.raises(ValueError, match=message):
    staged_config.validate_stages(two_stages(**overrides))


def test_teacher_outside_the_config_must_have_been_trained(tmp_path):
  config = two_stages()
  config.stages.student.teachers[0].workdir = str(tmp_path / "elsewhere")
  config.stages = ml_collections.ConfigDict({"student": config.stages.student})
  config.stage_order = ("student",)
  with pytest.raises(ValueError, match=r"teachers\[0\].workdir .*elsewhere.* no checkpoints"):
    staged_config.validate_stages(config)


def test_raw_text_without_tokenize_says_what_to_add(tmp_path):
  path = tmp_path / "t.csv"
  path.write_text("text,label\ngood,1\nbad,0\nfine,1\n")
  config = two_stages(
      dataset=f"csv:{path}?split=random&fractions=0.34,0,0.66", input_key="input_ids", num_classes=2
  )
  config.stages.teacher.update(
      dataset=config.stages.student.dataset, num_classes=2, input_key="input_ids"
  )
  with pytest.raises(
      ValueError,
      match=r"stage 'teacher': after train_transforms.*" r"not input_key 'input_ids'.*\"Tokenize\"",
  ):
    staged_config.validate_stages(config)
