"""The guards as the trainer applies them: labels of every train batch, loaded teachers checked
for finite values and for fitting their declared network, the workdir lock (issue 16).

They exercise `loop.train_and_evaluate` / `build.build_teachers`, so they hold only once the
engine calls `kd_jax.train.guards` and `kd_jax.train.workdir_lock`.
"""

import fcntl
import re

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import loop
from kd_jax.train import workdir_lock
from tests.train import helpers

BAD_INDEX = 300  # with seed 0 the shuffled epoch reaches it after the first batch


class _OneLabelIsTen:
  """MNIST subset whose train example BAD_INDEX has label 10, one past the last class."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    example = dict(self.source[index])
    if index == BAD_INDEX:
      example["label"] = 10
    return example


def bad_label_source(split, *, data_dir=None, manual_dir=None):
  source = helpers.mnist_small(split, data_dir=data_dir, manual_dir=manual_dir)
  return _OneLabelIsTen(source) if split == "train" else source


def test_out_of_range_train_label_stops_at_its_batch(tmp_path):
  # Without a check of every batch, the label only surfaces as a NaN loss at the next log step.
  config = helpers.tiny_config(
      dataset="tests.reliability.test_engine_wiring:bad_label_source",
      total_steps=16,
      log_every=16,
      checkpoint_every=16,
  )
  with pytest.raises(
      ValueError,
      match=r"train batch of step (\d+) \(tests.reliability.*\): "
      r"label 10 is outside \[0, num_classes=10\)",
  ) as error:
    loop.train_and_evaluate(config, str(tmp_path))
  step = int(re.search(r"step (\d+)", str(error.value)).group(1))
  assert 1 < step <= 16  # caught at its own batch, not by a check of the first batch only


def _teacher_workdir(path, width, poison=False):
  """A finished-looking teacher run of TinyCNN(width) without config.json."""
  variables = helpers.TinyCNN(width=width).init(
      jax.random.key(0), jnp.zeros((1, 28, 28, 1)), train=False
  )
  params = variables["params"]
  if poison:
    params = jax.tree.map(lambda p: p.at[(0,) * p.ndim].set(jnp.nan), params)
  state = {
      "step": jnp.asarray(4, jnp.int32),
      "params": {"student": params, "method": {}},
      "model_state": {"batch_stats": variables["batch_stats"]},
      "opt_state": (),
      "method_state": {},
      "rng": jnp.zeros(2, jnp.uint32),
  }
  checkpointer = checkpoint_lib.Checkpointer(str(path), async_save=False)
  checkpointer.save(4, state, {})
  checkpointer.close()
  return str(path)


def _student_of(teacher_dir, width=8):
  config = helpers.tiny_config(
      total_steps=4, method=ml_collections.ConfigDict({"name": "vanilla_kd"})
  )
  config.teachers = (
      ml_collections.ConfigDict(
          {
              "model": "tests.train.helpers:TinyCNN",
              "model_kwargs": {"width": width},
              "workdir": teacher_dir,
          }
      ),
  )
  return config


def test_teacher_with_nan_params_is_refused(tmp_path):
  teacher = _teacher_workdir(tmp_path / "teacher", 8, poison=True)
  with pytest.raises(
      FloatingPointError,
      match=r"teachers\[0\] \(.*teacher\) has non-finite " r"values \(NaN or inf\) in \d+ array",
  ):
    loop.train_and_evaluate(_student_of(teacher), str(tmp_path / "student"))


def test_teacher_of_another_architecture_is_named(tmp_path):
  teacher = _teacher_workdir(tmp_path / "teacher", 4)  # no config.json to compare with
  with pytest.raises(
      ValueError,
      match=r"teachers\[0\] \(.*TinyCNN .*\) does not match the "
      r"checkpoint in .*teacher: \d+ parameter\(s\) differ",
  ):
    loop.train_and_evaluate(_student_of(teacher, width=8), str(tmp_path / "student"))


def test_loop_takes_the_workdir_lock(tmp_path):
  (tmp_path / workdir_lock.LOCK_NAME).write_text('{"pid": 1, "host": "h", "started": "s"}')
  with open(tmp_path / workdir_lock.LOCK_NAME) as other:
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with pytest.raises(workdir_lock.WorkdirBusyError, match=r"in use by another run \(pid 1 "):
      loop.train_and_evaluate(helpers.tiny_config(total_steps=4), str(tmp_path))
