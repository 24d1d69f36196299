"""Checkpoint integrity without the loop: checksums catch flipped bytes, the fallback names them,
and a teacher reads only the student's params and model state (orbax partial restore)."""

import json
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import integrity
from tests.train import corruption

# orbax leaves an asyncio callback behind when a restore fails; harmless, not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _state(seed: int, method_size: int = 4):
  """A train-state-shaped tree; `method_size` makes the method state large and incompressible."""
  keys = jax.random.split(jax.random.key(seed), 3)
  params = {
      "student": {"Dense_0": {"kernel": jax.random.normal(keys[0], (16, 8)), "bias": jnp.zeros(8)}},
      "method": {"proj": jnp.ones((2, 2), jnp.bfloat16)},
  }
  return {
      "step": jnp.asarray(seed, jnp.int32),
      "params": params,
      "model_state": {"batch_stats": {"mean": jnp.full(8, float(seed))}},
      "opt_state": optax.sgd(0.1, momentum=0.9).init(params),
      "method_state": {"queue": jax.random.normal(keys[1], (method_size, method_size))},
      "rng": jax.random.key_data(keys[2]),
  }


def _save(workdir, steps=(1, 2), method_size=4):
  checkpointer = checkpoint_lib.Checkpointer(str(workdir), max_to_keep=5, async_save=True)
  for step in steps:
    checkpointer.save(step, _state(step, method_size), {"position": step})
  checkpointer.close()


def _flip_middle_of_largest_data_file(step_dir, count=16):
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  largest = max(files, key=lambda p: p.stat().st_size)
  data = bytearray(largest.read_bytes())
  middle = len(data) // 2
  data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
  largest.write_bytes(bytes(data))


def _assert_trees_equal(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_checksum_names_follow_orbax_and_detect_any_change():
  state = _state(0)
  sums = integrity.checksums(state)
  assert "opt_state.0.trace.student.Dense_0.kernel" in sums and "rng" in sums
  integrity.verify(state, integrity.record(state), where="here")  # unchanged: passes
  changed = jax.tree.map(lambda x: x, state)
  changed["params"]["student"]["Dense_0"]["bias"] = jnp.zeros(8).at[3].set(1e-30)
  with pytest.raises(
      integrity.CorruptCheckpointError,
      match=r"here: checksum mismatch in 1 of \d+ arrays " r"\(params\.student\.Dense_0\.bias\)",
  ):
    integrity.verify(changed, integrity.record(state), where="here")
  with pytest.raises(integrity.CorruptCheckpointError, match="has no checksums record"):
    integrity.verify(state, None, where="here")


def test_flipped_array_bytes_fall_back_to_the_previous_step(tmp_path, capsys):
  _save(tmp_path, method_size=256)
  corruption.flip_silently(tmp_path / "checkpoints" / "2")  # orbax alone would not notice
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path))
  restored = checkpointer.restore_latest(_state(0, 256))
  checkpointer.close()
  out = capsys.readouterr().out
  assert "checkpoint step 2 in" in out and "CorruptCheckpointError" in out, out
  assert re.search(
      r"checkpoint step 2 in \S+ failed to restore \(CorruptCheckpointError: "
      r"checkpoint step 2 in \S+: checksum mismatch in 1 of \d+ arrays",
      out,
  ), out
  assert restored.step == 1 and restored.iterator_state == {"position": 1}
  _assert_trees_equal(restored.state, _state(1, 256))
  assert [p.name.split("-")[0] for p in (tmp_path / "checkpoints_broken").iterdir()] == ["2"]


def test_tampered_iterator_position_is_detected(tmp_path, capsys):
  _save(tmp_path)
  path = tmp_path / "checkpoints" / "2" / "data_iterator" / "process_0-of-1.json"
  payload = json.loads(path.read_text())
  payload["json"]["position"] = 7
  path.write_text(json.dumps(payload))
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path))
  restored = checkpointer.restore_latest(_state(0))
  checkpointer.close()
  assert restored.step == 1
  assert "process_0-of-1.json: checksum mismatch" in capsys.readouterr().out


def test_checkpoint_without_checksums_restores_with_a_warning(tmp_path, capsys):
  _save(tmp_path, steps=(1,))
  shutil.rmtree(tmp_path / "checkpoints" / "1" / "checksums")
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path))
  restored = checkpointer.restore_latest(_state(0))
  checkpointer.close()
  assert restored.step == 1
  assert "has no checksums" in capsys.readouterr().out


def test_teacher_restore_reads_only_student_params_and_model_state(tmp_path):
  # A large, incompressible method state fills the middle of the data file: corrupting it breaks
  # the full restore, while the teacher (params + model state only) still loads, bit-exact.
  _save(tmp_path, steps=(1,), method_size=512)
  _flip_middle_of_largest_data_file(tmp_path / "checkpoints" / "1", count=4096)
  with pytest.raises(integrity.CorruptCheckpointError, match="checkpoint step 1"):
    checkpoint_lib.restore_latest_state(str(tmp_path))
  with pytest.raises(integrity.CorruptCheckpointError):
    checkpoint_lib.verify_latest(str(tmp_path))
  step, variables = checkpoint_lib.restore_exported_variables(str(tmp_path))
  expected = _state(1, 512)
  assert step == 1 and set(variables) == {"params", "batch_stats"}
  _assert_trees_equal(
      variables, {"params": expected["params"]["student"], **expected["model_state"]}
  )


def test_corrupt_teacher_checkpoint_is_one_clear_error(tmp_path):
  _save(tmp_path, steps=(1,))
  for path in (tmp_path / "checkpoints" / "1" / "state").rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(b"")
  with pytest.raises(
      integrity.CorruptCheckpointError,
      match=r"Cannot read the teacher's checkpoint step 1 in .*re-run",
  ):
    checkpoint_lib.restore_exported_variables(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="train the teacher first"):
    checkpoint_lib.restore_exported_variables(str(tmp_path / "nowhere"))


def test_finished_run_verifies(tmp_path):
  _save(tmp_path)
  assert checkpoint_lib.verify_latest(str(tmp_path)) == 2
