"""Runs a notebook of notebooks/ top to bottom at its small size (KD_JAX_NOTEBOOK_SIZE=small).

Most notebooks run a few stages of their table's smoke config, which the table's smoke test
(tests/experiments) trains anyway. That test copies its finished stages into the notebook's
workdir first (`copy_stages`) and runs the notebook there: the notebook's `stages.run` finds
them complete and returns their results, so every cell runs without training the same stages
twice. A stage the notebook runs with another config than the smoke run's is refused by the
resume check (`workdir_config.check_same`), so a copied stage cannot stand in for a different one.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK_DIR = os.path.join(REPO, "notebooks")


def execute(name: str, workdir, monkeypatch) -> str:
  """Runs notebooks/NAME with KD_JAX_NOTEBOOK_WORKDIR=workdir and returns what its cells printed;
  a failing cell raises CellExecutionError, which names the cell and its traceback."""
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  monkeypatch.setenv("KD_JAX_NOTEBOOK_SIZE", "small")
  monkeypatch.setenv("KD_JAX_NOTEBOOK_WORKDIR", str(workdir))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  notebook = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
  nbclient.NotebookClient(
      notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": REPO}}
  ).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def copy_stages(source: str, target: str, leave_out=()) -> None:
  """Copies the stages of the staged run in `source` but `leave_out`, and its shared teacher
  cache, into `target` (the notebook's workdir)."""
  for name in sorted(os.listdir(source)):
    path = os.path.join(source, name)
    if os.path.isdir(path) and name not in leave_out:
      shutil.copytree(path, os.path.join(target, name))


def assert_reused(output: str, trained=()) -> None:
  """Every stage the notebook ran (its "=== stage k/n NAME" lines) but `trained` was found
  complete (kd_jax.train.loop says so) instead of being trained again."""
  ran = re.findall(r"=== stage \d+/\d+ (\S+) -> ", output)
  assert ran, output[-2000:]
  again = [n for n in ran if n not in trained and f"{os.sep}{n} is already complete" not in output]
  assert not again, f"the notebook trained these stages of the smoke run again: {again}"
