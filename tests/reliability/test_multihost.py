"""Multi-host for real: two processes joined by `jax.distributed.initialize` (local coordinator,
2 CPU devices each) run one config end to end in one workdir (issue 16, item 8).

Checked: each host reads its own rows of every global batch (the hosts' reads are disjoint); the
run equals a single-process run of the same config on as many devices (the same losses at every
step, the same final parameters); one metrics file and one checkpoint are written; the
multi-host evaluation, sharded over the hosts, equals a single-process evaluation of those
parameters over the whole split; the run learns.
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
from kd_jax.train import forward as forward_lib
from kd_jax.train import writers
from tests import compile_flags
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
    env.update(
        JAX_PLATFORMS="cpu",
        PYTHONPATH=ROOT,
        KD_JAX_READS_DIR=str(reads),
        XLA_FLAGS=compile_flags.xla_flags(2),
        JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
        JAX_NUM_PROCESSES="2",
        JAX_PROCESS_ID=str(index),
    )
    processes.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments.main",
                f"--config={CONFIG}",
                f"--workdir={workdir}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )
  outputs = [p.communicate(timeout=300)[0] for p in processes]
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-3000:]

  # Each host read only its own rows of the global batches (disjoint: 512 examples, one epoch
  # is 16 steps), at least 8 steps x 16 examples (more with grain's read-ahead).
  host_reads = [
      {int(line) for line in (reads / f"reads_{i}.txt").read_text().split()} for i in range(2)
  ]
  assert all(len(r) >= 8 * 16 for r in host_reads), [len(r) for r in host_reads]
  assert not host_reads[0] & host_reads[1]

  # The same config in one process on 4 devices trains on the same global batches.
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, XLA_FLAGS=compile_flags.xla_flags(4))
  single_dir = tmp_path / "single"
  single = subprocess.run(
      [
          sys.executable,
          "-m",
          "experiments.main",
          f"--config={CONFIG}",
          f"--workdir={single_dir}",
          "--config.multihost=False",
      ],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert single.returncode == 0, (single.stdout + single.stderr)[-3000:]
  losses = lambda d: [r["loss"] for r in writers.read_metrics(str(d)) if r["split"] == "train"]
  np.testing.assert_allclose(losses(workdir), losses(single_dir), rtol=1e-5)
  _, multi_vars = checkpoint_lib.restore_exported_variables(str(workdir))
  _, single_vars = checkpoint_lib.restore_exported_variables(str(single_dir))
  for a, b in zip(jax.tree.leaves(multi_vars), jax.tree.leaves(single_vars)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)

  # One metrics file (process 0), every step once, and the run learns.
  rows = [r for r in writers.read_metrics(str(workdir)) if r["split"] == "train"]
  assert [r["step"] for r in rows] == list(range(1, 9))
  assert rows[-1]["loss"] < rows[0]["loss"] and np.isfinite([r["loss"] for r in rows]).all()
  assert sorted(os.listdir(workdir / "checkpoints" / "8" / "data_iterator")) == [
      "commit_success.txt",
      "process_0-of-2.json",
      "process_1-of-2.json",
  ]

  # The sharded evaluation equals a single-process evaluation of the saved parameters.
  _, variables = checkpoint_lib.restore_exported_variables(str(workdir))
  source = helpers.mnist_small("test")
  examples = [source[i] for i in range(len(source))]
  batch = {
      "image": np.stack([e["image"] for e in examples]),
      "label": np.array([e["label"] for e in examples]),
  }
  logits = helpers.TinyCNN(width=8).apply(
      variables, forward_lib.model_input(batch, "image", jnp.float32), train=False
  )["logits"]
  accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == batch["label"]))
  results = json.loads((workdir / "results.json").read_text())
  assert results["accuracy"] == pytest.approx(accuracy, abs=1e-6)
  assert jax.process_count() == 1  # this test process itself stayed single-host
