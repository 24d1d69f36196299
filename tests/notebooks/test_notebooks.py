"""Every notebook in notebooks/ runs top to bottom at its small size (KD_JAX_NOTEBOOK_SIZE)."""

import glob
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))


def test_every_notebook_is_covered():
  names = {os.path.basename(path) for path in NOTEBOOKS}
  assert {"quickstart.ipynb", "fidelity.ipynb", "reaugkd.ipynb"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, tmp_path, monkeypatch):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  monkeypatch.setenv("KD_JAX_NOTEBOOK_SIZE", "small")
  monkeypatch.setenv("KD_JAX_NOTEBOOK_WORKDIR", str(tmp_path))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  notebook = nbformat.read(path, as_version=4)
  # Raises CellExecutionError naming the cell and its traceback when a cell fails.
  nbclient.NotebookClient(
      notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": REPO}}
  ).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
  assert not [o for o in outputs if o.get("output_type") == "error"]
