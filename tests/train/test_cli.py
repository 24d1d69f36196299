"""End-to-end runs of `python -m experiments.main` in subprocesses: SIGKILL + resume, 1 vs 8
simulated devices, the smoke config, and unknown `--config.*` overrides."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import writers
from tests import compile_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = "tests/train/tiny_run_config.py"
_COMPILATION_CACHE = {}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA cache for this module's subprocesses (the session's, when
  JAX_COMPILATION_CACHE_DIR is set, as `make test` does): runs of the same config compile once
  (the same executable is loaded, so results are unchanged)."""
  _COMPILATION_CACHE["dir"] = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(
      tmp_path_factory.mktemp("jax_cache")
  )
  yield
  _COMPILATION_CACHE.clear()


def cli(config, workdir, *overrides, devices=1):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, XLA_FLAGS=compile_flags.xla_flags(devices))
  if "dir" in _COMPILATION_CACHE:
    env.update(
        JAX_COMPILATION_CACHE_DIR=_COMPILATION_CACHE["dir"],
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
  return subprocess.Popen(
      [
          sys.executable,
          "-m",
          "experiments.main",
          f"--config={config}",
          f"--workdir={workdir}",
          *overrides,
      ],
      cwd=ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )


def finish(process, timeout=240):
  output, _ = process.communicate(timeout=timeout)
  assert process.returncode == 0, output[-3000:]
  return output


def train_losses(workdir):
  rows = [r for r in writers.read_metrics(workdir) if r["split"] == "train"]
  steps = [r["step"] for r in rows]
  assert len(steps) == len(set(steps)), f"duplicate steps in {workdir}: {steps}"
  return steps, np.array([r["loss"] for r in rows])


def start_and_kill(config, victim_dir, *, at_step=8):
  """Starts a run of `config` and SIGKILLs it once checkpoint `at_step` exists."""
  victim = cli(config, victim_dir)
  deadline = time.time() + 180
  while not (victim_dir / "checkpoints" / str(at_step)).exists():
    assert victim.poll() is None, victim.communicate()[0][-3000:]
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.05)
  victim.send_signal(signal.SIGKILL)
  victim.communicate()
  assert victim.returncode == -signal.SIGKILL
  assert not (victim_dir / "results.json").exists(), "the run finished before it was killed"


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path):
  reference = cli(f"{TINY}:resume", tmp_path / "reference")
  victim_dir = tmp_path / "victim"
  start_and_kill(f"{TINY}:resume", victim_dir)
  killed_at = sorted(
      int(p.name) for p in (victim_dir / "checkpoints").iterdir() if p.name.isdigit()
  )[-1]
  assert 8 <= killed_at < 24

  output = finish(cli(f"{TINY}:resume", victim_dir))
  assert "Resuming" in output and "from checkpoint step" in output, output[-2000:]
  finish(reference)

  _, ref_vars = checkpoint_lib.restore_exported_variables(str(tmp_path / "reference"))
  _, resumed_vars = checkpoint_lib.restore_exported_variables(str(victim_dir))
  ref_leaves, ref_tree = jax.tree.flatten(ref_vars)
  resumed_leaves, resumed_tree = jax.tree.flatten(resumed_vars)
  assert ref_tree == resumed_tree
  for a, b in zip(ref_leaves, resumed_leaves):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  ref_steps, ref_losses = train_losses(tmp_path / "reference")
  steps, losses = train_losses(victim_dir)
  assert steps == ref_steps == list(range(1, 25))
  np.testing.assert_array_equal(losses, ref_losses)


@pytest.mark.slow
def test_one_and_eight_devices_give_the_same_loss_curve(tmp_path):
  single = cli(f"{TINY}:devices", tmp_path / "one", devices=1)
  eight = cli(f"{TINY}:devices", tmp_path / "eight", devices=8)
  finish(single)
  finish(eight)
  for stage in ("plain", "accum"):
    steps_1, losses_1 = train_losses(tmp_path / "one" / stage)
    steps_8, losses_8 = train_losses(tmp_path / "eight" / stage)
    assert steps_1 == steps_8 == list(range(1, 9))
    assert losses_1[-1] < losses_1[0]  # it learns
    np.testing.assert_allclose(losses_8, losses_1, rtol=1e-4, atol=1e-5)
    # A run saved on 8 devices loads on 1 (how a teacher from a pod is used on a laptop).
    _, params_8 = checkpoint_lib.restore_exported_variables(str(tmp_path / "eight" / stage))
    _, params_1 = checkpoint_lib.restore_exported_variables(str(tmp_path / "one" / stage))
    for a, b in zip(jax.tree.leaves(params_8), jax.tree.leaves(params_1)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
  results_1 = json.loads((tmp_path / "one" / "results.json").read_text())
  results_8 = json.loads((tmp_path / "eight" / "results.json").read_text())
  for stage in ("plain", "accum"):
    np.testing.assert_allclose(
        results_8[stage]["accuracy"], results_1[stage]["accuracy"], atol=1 / 256 + 1e-9
    )  # at most one of 256 eval digits flips


@pytest.mark.slow
def test_smoke_config_end_to_end(tmp_path):
  output = finish(cli("experiments/configs/smoke.py:tiny", tmp_path))
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results) == {"teacher", "student"}
  assert set(results["student"]) == {
      "accuracy",
      "teacher_accuracy",
      "agreement",
      "predictive_kl",
      "evals",
      "history",  # the periodic evaluations before the final one
  }
  assert [row["step"] for row in results["student"]["history"]["eval"]] == [15]
  assert results["student"]["teacher_accuracy"] == results["teacher"]["accuracy"]
  for stage in ("teacher", "student"):
    steps, losses = train_losses(tmp_path / stage)
    assert steps[-1] == 30 and np.all(np.isfinite(losses))
    evals = [r["step"] for r in writers.read_metrics(tmp_path / stage) if r["split"] == "eval"]
    assert evals == [15, 30]
    assert any(
        name.startswith("events.out.tfevents")
        for name in os.listdir(tmp_path / stage / "tensorboard")
    )
  assert "student: 100%" in output  # the progress bar ran to the end


def test_unknown_override_fails_fast(tmp_path):
  process = cli(f"{TINY}:resume", tmp_path, "--config.lerning_rate=0.1")
  output, _ = process.communicate(timeout=60)
  assert process.returncode != 0
  assert "unknown config key" in output and "lerning_rate" in output, output[-2000:]
  assert not (tmp_path / "config.json").exists()


def test_inconsistent_teacher_fails_before_any_stage_runs(tmp_path):
  # The student's teacher claims another width than the teacher stage trains.
  process = cli(
      "experiments/configs/smoke.py:tiny",
      tmp_path,
      "--config.stages.teacher.model_kwargs.widths=(8, 8, 16, 16)",
  )
  output, _ = process.communicate(timeout=60)
  assert process.returncode != 0
  assert "FATAL: stage 'student': teachers[0] does not match the run of stage 'teacher'" in output
  assert not (tmp_path / "teacher").exists()
