"""In-process runs of the loop: a corrupt newest checkpoint is reported, set aside and the
previous one used (ending bit-identical to the uninterrupted run); config changes in a workdir
are refused; a finished run is not retrained."""

import logging
import re
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import loop
from kd_jax.train import writers
from tests.train import corruption
from tests.train import helpers


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  config = helpers.tiny_config(total_steps=12, checkpoint_every=4, max_to_keep=3)
  results = loop.train_and_evaluate(config, str(workdir))
  _, variables = checkpoint_lib.restore_exported_variables(str(workdir))
  return config, workdir, results, jax.device_get(variables)


def test_run_outputs(finished_run):
  _, workdir, results, _ = finished_run
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [4, 8, 12]
  rows = writers.read_metrics(str(workdir))
  assert [r["step"] for r in rows if r["split"] == "train"] == list(range(1, 13))
  assert [r for r in rows if r["split"] == "eval"][-1]["accuracy"] == results["accuracy"]
  assert results["accuracy"] > 0.3  # 12 steps already learn: chance is 0.1


# orbax leaves an asyncio callback behind when a restore fails; harmless, not ours to fix.
IGNORE_ORBAX_ASYNC = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@IGNORE_ORBAX_ASYNC
def test_corrupt_checkpoint_falls_back_to_previous(finished_run, tmp_path, capsys):
  config, workdir, results, variables = finished_run
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  (copy / "results.json").unlink()
  # Truncate every data file of the newest checkpoint's state.
  for path in (copy / "checkpoints" / "12" / "state").rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(b"")
  again = loop.train_and_evaluate(config, str(copy))
  out = capsys.readouterr().out
  assert re.search(r"checkpoint step 12 in \S+ failed to restore", out), out
  assert "from checkpoint step 8" in out
  broken = list((copy / "checkpoints_broken").iterdir())
  assert len(broken) == 1 and broken[0].name.startswith("12-")
  _, resumed = checkpoint_lib.restore_exported_variables(str(copy))
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert again == results
  steps = [r["step"] for r in writers.read_metrics(str(copy)) if r["split"] == "train"]
  assert steps == list(range(1, 13))  # rows 9-12 of the first pass were moved aside
  assert (copy / "metrics.discarded.jsonl").exists()


def test_changed_config_in_same_workdir_is_refused(finished_run):
  config, workdir, _, _ = finished_run
  changed = helpers.tiny_config(total_steps=12, checkpoint_every=4, max_to_keep=3)
  changed.optimizer.learning_rate = 0.01
  with pytest.raises(ValueError, match=r"different config.*optimizer.learning_rate: 0.05 -> 0.01"):
    loop.train_and_evaluate(changed, str(workdir))


def test_finished_run_is_not_retrained(finished_run, capsys):
  config, workdir, results, _ = finished_run
  config = helpers.tiny_config(
      total_steps=12, checkpoint_every=4, max_to_keep=3, progress_bar=True
  )  # presentation keys may change
  assert loop.train_and_evaluate(config, str(workdir)) == results
  assert "already complete" in capsys.readouterr().out


def test_read_only_restores_are_quiet(finished_run, caplog, capfd):
  # A teacher, `experiments.evaluate` and `kd_jax.predict` restore read-only on purpose; orbax's
  # "Given directory is read only=..." warning only alarmed users.
  _, workdir, _, _ = finished_run
  with caplog.at_level(logging.INFO):
    checkpoint_lib.restore_exported_variables(str(workdir))
    checkpoint_lib.restore_latest_state(str(workdir))
  out, err = capfd.readouterr()
  assert "read only" not in (caplog.text + out + err).lower()
  assert any(r.name == "absl" for r in caplog.records)  # orbax's other records still pass
  assert not logging.getLogger("absl").filters  # the filter does not outlive the restore


@IGNORE_ORBAX_ASYNC
def test_no_restorable_checkpoint_stops_the_run(finished_run, tmp_path):
  config, workdir, _, _ = finished_run
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  for path in (copy / "checkpoints").rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(b"")
  with pytest.raises(
      RuntimeError, match=r"None of the checkpoints \[4, 8, 12\].*could be restored"
  ):
    loop.train_and_evaluate(config, str(copy))
  assert len(list((copy / "checkpoints_broken").iterdir())) == 3


def test_supervised_student_reports_fidelity_to_a_listed_teacher(finished_run, tmp_path):
  # The "student trained with CE" rows of the fidelity tables: the teacher is not used in the
  # loss, only in the evaluation (agreement, predictive KL).
  _, teacher_dir, teacher_results, _ = finished_run
  teacher = ml_collections.ConfigDict(
      {
          "model": "tests.train.helpers:TinyCNN",
          "model_kwargs": {"width": 8},
          "workdir": str(teacher_dir),
      }
  )
  config = helpers.tiny_config(total_steps=4, checkpoint_every=4, teachers=(teacher,))
  config.model_kwargs = ml_collections.ConfigDict({"width": 4})
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert set(results) == {"accuracy", "teacher_accuracy", "agreement", "predictive_kl", "evals"}
  assert results["evals"]["eval"]["accuracy"] == results["accuracy"]
  assert results["teacher_accuracy"] == teacher_results["accuracy"]
  assert results["predictive_kl"] > 0

  wrong = helpers.tiny_config(
      total_steps=4,
      teachers=(
          ml_collections.ConfigDict(
              {
                  "model": "tests.train.helpers:TinyCNN",
                  "model_kwargs": {"width": 16},
                  "workdir": str(teacher_dir),
              }
          ),
      ),
  )
  with pytest.raises(
      ValueError,
      match=r"teachers\[0\] is declared as .*'width': 16.* but the "
      r"run in .* trained .*'width': 8",
  ):
    loop.train_and_evaluate(wrong, str(tmp_path / "wrong"))


@IGNORE_ORBAX_ASYNC
def test_flipped_bytes_fail_the_checksum_and_fall_back(finished_run, tmp_path, capsys):
  # results.json stays: a finished run re-verifies its checkpoint before reporting old results.
  config, workdir, results, variables = finished_run
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  corruption.flip_silently(copy / "checkpoints" / "12")  # decodes without error: only the
  # checksum can tell
  again = loop.train_and_evaluate(config, str(copy))
  out = capsys.readouterr().out
  assert "already complete" not in out
  assert re.search(
      r"checkpoint step 12 in \S+ failed to restore \(CorruptCheckpointError: .*"
      r"checksum mismatch in \d+ of \d+ arrays",
      out,
  ), out
  assert "from checkpoint step 8" in out
  _, resumed = checkpoint_lib.restore_exported_variables(str(copy))
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert again == results
