"""`python -m experiments.main` as a user meets it: every error is one FATAL line naming the
problem (the traceback goes to WORKDIR/error.log, or to the console with --verbosity=1), and a
second command in a busy workdir stops at once, naming the run that holds it."""

import os
import subprocess
import sys

import pytest

from kd_jax.train import workdir_lock
from tests import compile_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = "tests/train/tiny_run_config.py:resume"


def run_cli(workdir, *overrides, timeout=120):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, XLA_FLAGS=compile_flags.xla_flags())
  process = subprocess.run(
      [
          sys.executable,
          "-m",
          "experiments.main",
          f"--config={TINY}",
          f"--workdir={workdir}",
          *overrides,
      ],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=timeout,
  )
  return process.returncode, process.stdout + process.stderr


def fatal_lines(output):
  return [line for line in output.splitlines() if line.startswith("FATAL: ")]


def test_bad_hyper_parameter_is_one_line_and_leaves_nothing(tmp_path):
  code, output = run_cli(tmp_path / "run", "--config.optimizer.learning_rate=-0.5")
  assert code != 0
  assert fatal_lines(output) == [
      "FATAL: Inconsistent config: optimizer.learning_rate must be a "
      "finite number > 0, got -0.5."
  ], output[-2000:]
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_error_during_the_run_is_one_fatal_line_with_the_traceback_logged(tmp_path):
  workdir = tmp_path / "run"
  code, output = run_cli(workdir, "--config.dataset=no_such_dataset")
  assert code != 0
  lines = fatal_lines(output)
  assert len(lines) == 1 and "Unknown dataset 'no_such_dataset'" in lines[0], output[-2000:]
  assert f"full traceback in {workdir / 'error.log'}" in lines[0]
  assert "Traceback (most recent call last)" not in output
  log = (workdir / "error.log").read_text()
  assert "Traceback (most recent call last)" in log and "no_such_dataset" in log

  code, output = run_cli(workdir, "--config.dataset=no_such_dataset", "--verbosity=1")
  assert code != 0 and "Traceback (most recent call last)" in output


def test_busy_workdir_stops_the_second_run_at_once(tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lock.hold(workdir):  # this test process is "the first run"
    code, output = run_cli(workdir)
  assert code != 0
  lines = fatal_lines(output)
  assert len(lines) == 1, output[-2000:]
  assert (
      f"WorkdirBusyError: {workdir} is in use by another run (pid {os.getpid()} on host" in lines[0]
  )
  assert not os.path.exists(os.path.join(workdir, "config.json"))  # it touched nothing
