"""Every notebook in notebooks/ runs top to bottom at its small size (KD_JAX_NOTEBOOK_SIZE): here,
or, when it runs stages of its table's smoke config, in that table's smoke test, on the stages
the smoke run has already trained (tests/notebooks/runner.py)."""

import glob
import os

import pytest

from tests.notebooks import runner

NOTEBOOKS = sorted(glob.glob(os.path.join(runner.NOTEBOOK_DIR, "*.ipynb")))
# notebook -> the smoke test module that runs it on its smoke run's stages.
ON_SMOKE_RUNS = {
    "amad.ipynb": "tests/experiments/test_amad_smoke.py",
    "disk.ipynb": "tests/experiments/test_disk_smoke.py",
    "fidelity.ipynb": "tests/experiments/test_fidelity_smoke.py",
    "reaugkd.ipynb": "tests/experiments/test_reaugkd_smoke.py",
    "sea.ipynb": "tests/experiments/test_sea_smoke.py",
    "zoo.ipynb": "tests/experiments/test_zoo_smoke.py",
}
RUN_HERE = [p for p in NOTEBOOKS if os.path.basename(p) not in ON_SMOKE_RUNS]


def test_every_notebook_is_covered():
  names = {os.path.basename(path) for path in NOTEBOOKS}
  assert {"quickstart.ipynb", "fidelity.ipynb", "reaugkd.ipynb"} <= names
  assert set(ON_SMOKE_RUNS) <= names
  for name, module in ON_SMOKE_RUNS.items():  # each of those modules really executes it
    with open(os.path.join(runner.REPO, module)) as f:
      assert f'runner.execute("{name}"' in f.read(), (name, module)


@pytest.mark.slow
@pytest.mark.parametrize("path", RUN_HERE, ids=os.path.basename)
def test_notebook_runs(path, tmp_path, monkeypatch):
  runner.execute(os.path.basename(path), tmp_path, monkeypatch)
