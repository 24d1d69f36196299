"""The workdir lock across real processes: exclusive, released when its holder dies (SIGKILL
included), re-entrant within one process, and leaving no trace in an otherwise empty workdir."""

import os
import signal
import subprocess
import sys
import time

import pytest

from kd_jax.train import workdir_lock

HOLD = (
    "import sys, time; from kd_jax.train import workdir_lock; "
    "workdir_lock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(600)"
)


@pytest.fixture()
def holder(tmp_path):
  """Another process that holds tmp_path/run until the test kills it."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  process = subprocess.Popen(
      [sys.executable, "-c", HOLD, str(tmp_path / "run")],
      cwd=root,
      env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": root},
      stdout=subprocess.PIPE,
      text=True,
  )
  assert process.stdout.readline().strip() == "held"
  yield process
  if process.poll() is None:
    process.kill()
  process.wait()


def test_second_process_is_refused_until_the_holder_is_killed(tmp_path, holder):
  workdir = str(tmp_path / "run")
  with pytest.raises(
      workdir_lock.WorkdirBusyError, match=rf"in use by another run \(pid {holder.pid} on host "
  ):
    workdir_lock.acquire(workdir)
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  deadline = time.time() + 10
  while True:  # the kernel drops a dead process's flock at once; allow for slow reaping
    try:
      workdir_lock.acquire(workdir)
      break
    except workdir_lock.WorkdirBusyError:
      assert time.time() < deadline
      time.sleep(0.05)
  workdir_lock.release(workdir)


def test_reentrant_in_one_process_and_no_trace_in_an_empty_workdir(tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lock.hold(workdir):
    with workdir_lock.hold(workdir):  # a staged run, then the loop, lock the same directory
      pass
    assert os.path.exists(os.path.join(workdir, ".lock"))  # still held by the outer level
  assert os.listdir(workdir) == []
  with workdir_lock.hold(workdir):
    open(os.path.join(workdir, "config.json"), "w").close()
  assert sorted(os.listdir(workdir)) == [".lock", "config.json"]  # a real run keeps its lock file
