"""Suite-wide hooks: a `needs_data` test (tests/system_data.py) fails under CI, skips locally."""

from tests import system_data


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


pytest_plugins = ["pytester"]  # tests/reliability/test_system_data.py runs the hook in a session
