"""A staged workdir moved elsewhere still resumes: saved configs keep stage teachers relative."""

import shutil

import ml_collections
import pytest

from kd_jax.train import config_json
from kd_jax.train import stages
from tests.train import helpers


def test_portable_keeps_sibling_stages_relative():
  saved = config_json.portable(
      {
          "seed": 0,
          "teachers": [
              {"model": "m", "workdir": "/runs/x/teacher"},
              {"model": "m", "workdir": "/data/teachers/r56"},
              {"model": "m", "workdir": "relative/t"},
          ],
      },
      "/runs/x/student",
  )
  assert [t["workdir"] for t in saved["teachers"]] == [
      "../teacher",
      "/data/teachers/r56",
      "relative/t",
  ]
  moved = config_json.portable(
      {"teachers": [{"model": "m", "workdir": "/new/place/teacher"}]}, "/new/place/student"
  )
  assert moved["teachers"] == [{"model": "m", "workdir": "../teacher"}]
  assert config_json.portable({"seed": 1}, "/runs/x") == {"seed": 1}


@pytest.mark.slow
def test_moved_staged_workdir_resumes(tmp_path, capsys):
  config = ml_collections.ConfigDict()
  config.stages = ml_collections.ConfigDict()
  config.stages.teacher = helpers.tiny_config(total_steps=4, checkpoint_every=4)
  student = helpers.tiny_config(
      total_steps=4, checkpoint_every=4, method=ml_collections.ConfigDict({"name": "vanilla_kd"})
  )
  student.teachers = (
      ml_collections.ConfigDict(
          {
              "model": "tests.train.helpers:TinyCNN",
              "model_kwargs": {"width": 8},
              "workdir": "teacher",
          }
      ),
  )
  config.stages.student = student
  config.stage_order = ("teacher", "student")
  results = stages.run(config, str(tmp_path / "first"))
  shutil.move(str(tmp_path / "first"), str(tmp_path / "moved"))
  capsys.readouterr()
  assert stages.run(config, str(tmp_path / "moved")) == results
  out = capsys.readouterr().out
  assert out.count("is already complete") == 2, out
