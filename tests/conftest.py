"""Suite-wide hooks: a `needs_data` test (tests/system_data.py) fails under CI, skips locally;
compile (tests/compile_flags.py) and thread settings for the whole session; end-to-end modules
first under pytest-xdist."""

import os

# Set before any test module imports NumPy or JAX (JAX reads these when it is imported), and
# inherited by the subprocesses and notebook kernels the tests start.
# Every compiled program goes to the persistent cache (JAX_COMPILATION_CACHE_DIR, which `make
# test` sets): JAX's default keeps only programs that took >= 1 s to compile, and on an idle
# 2-core machine most of the suite's small programs take less, yet they are compiled again in
# each stage of a table, in each subprocess run and in each notebook kernel.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# One BLAS thread: OpenBLAS's spinning threads fight XLA's for the cores (scikit-learn fits in
# the evaluators, SEA's PCA), and pytest-xdist runs two test processes on a 2-core machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# pylint: disable=g-import-not-at-top,wrong-import-position
from tests import compile_flags
from tests import system_data

# LLVM optimisation off for every program the session compiles (tests/compile_flags.py): compile
# time is most of the suite's time, and the steps run on a few batches only.
os.environ["XLA_FLAGS"] = compile_flags.with_fast_compile(os.environ.get("XLA_FLAGS", ""))

# Modules that train end to end (a table's smoke run, a notebook, subprocess runs): scheduled
# first, so that under pytest-xdist (`--dist loadfile --no-loadscope-reorder`, as `make test`
# runs it) the last files handed to a worker are short ones and both workers finish together.
END_TO_END_DIRS = ("tests/notebooks/", "tests/experiments/")


def pytest_configure(config):
  config.addinivalue_line(
      "markers",
      "needs_data(package, available): reads files of a Debian data package; a "
      "missing package fails under CI=true and skips otherwise",
  )


def pytest_runtest_setup(item):
  for marker in item.iter_markers(name="needs_data"):
    if not marker.kwargs["available"]:
      system_data.missing_data(marker.kwargs["package"])


def _module_path(item) -> str:
  return item.nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config, items):
  if not hasattr(config, "workerinput"):  # only in a pytest-xdist worker
    return
  slow_modules = {_module_path(i) for i in items if i.get_closest_marker("slow")}

  def rank(item) -> int:
    path = _module_path(item)
    if path.startswith(END_TO_END_DIRS):
      return 0
    return 1 if path in slow_modules else 2

  items.sort(key=rank)  # stable: the collection order within each rank


pytest_plugins = ["pytester"]  # tests/reliability/test_system_data.py runs the hook in a session
