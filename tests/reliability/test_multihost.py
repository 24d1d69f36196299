"""Multi-host for real: two processes joined by `jax.distributed.initialize` (local coordinator,
2 CPU devices each) run one config end to end in one workdir (issue 16, item 8).

Checked: each host reads its own, disjoint shard of the train data; the hosts end with the same
(replicated) parameters, written once; the multi-host evaluation, sharded over the hosts, equals
a single-process evaluation of those parameters over the whole split; the run learns.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import steps as steps_lib
from kd_jax.train import writers
from tests.train import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "tests/reliability/multihost_config.py"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_share_one_run(tmp_path):
  workdir, reads = tmp_path / "run", tmp_path / "reads"
  reads.mkdir()
  port = _free_port()
  processes = []
  for index in range(2):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, KD_JAX_READS_DIR=str(reads),
               XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(index))
    processes.append(subprocess.Popen(
        [sys.executable, "-m", "experiments.main", f"--config={CONFIG}", f"--workdir={workdir}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  outputs = [p.communicate(timeout=300)[0] for p in processes]
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-3000:]

  # Each host read only its own strided shard (disjoint), at least 8 steps x 16 examples of it
  # (more with the peeked first batch and grain's read-ahead).
  host_reads = [{int(line) for line in (reads / f"reads_{i}.txt").read_text().split()}
                for i in range(2)]
  assert all(len(r) >= 8 * 16 for r in host_reads), [len(r) for r in host_reads]
  assert all(index % 2 == host for host, r in enumerate(host_reads) for index in r)

  # One metrics file (process 0), every step once, and the run learns.
  rows = [r for r in writers.read_metrics(str(workdir)) if r["split"] == "train"]
  assert [r["step"] for r in rows] == list(range(1, 9))
  assert rows[-1]["loss"] < rows[0]["loss"] and np.isfinite([r["loss"] for r in rows]).all()
  assert sorted(os.listdir(workdir / "checkpoints" / "8" / "data_iterator")) == [
      "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]

  # The sharded evaluation equals a single-process evaluation of the saved parameters.
  _, variables = checkpoint_lib.restore_exported_variables(str(workdir))
  source = helpers.mnist_small("test")
  examples = [source[i] for i in range(len(source))]
  batch = {"image": np.stack([e["image"] for e in examples]),
           "label": np.array([e["label"] for e in examples])}
  logits = helpers.TinyCNN(width=8).apply(
      variables, steps_lib.model_input(batch, "image", jnp.float32), train=False)["logits"]
  accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == batch["label"]))
  results = json.loads((workdir / "results.json").read_text())
  assert results["accuracy"] == pytest.approx(accuracy, abs=1e-6)
  assert jax.process_count() == 1  # this test process itself stayed single-host
