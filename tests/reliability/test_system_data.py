"""Missing test data fails under CI and skips locally; package files are found through dpkg."""

import pytest

from tests import system_data


def test_missing_data_fails_under_ci(monkeypatch):
  monkeypatch.setenv("CI", "true")
  with pytest.raises(
      pytest.fail.Exception,
      match="dataset-fashion-mnist is not installed.*"
      "under CI=true missing test data is an error",
  ):
    system_data.missing_data("dataset-fashion-mnist")


def test_missing_data_skips_locally(monkeypatch):
  monkeypatch.delenv("CI", raising=False)
  with pytest.raises(pytest.skip.Exception, match="make system-data"):
    system_data.missing_data("dataset-fashion-mnist")


def test_files_are_found_through_the_package_not_a_fixed_path():
  listed = system_data.package_files("asterisk-core-sounds-en-wav")
  if not listed:
    system_data.missing_data("asterisk-core-sounds-en-wav")
  sounds = system_data.asterisk_sounds()
  assert sounds is not None and (sounds / "digits" / "1.wav").is_file()
  assert str(sounds / "digits" / "1.wav") in listed  # wherever Debian puts it (en_US_f_Allison)
  assert (
      system_data.find("asterisk-core-sounds-en-wav", "/no/such/file.wav", "/nonexistent*") is None
  )


_MARKED_TEST = """
from tests import system_data

@system_data.needs("no-such-data-package", False)
def test_reads_the_package():
  pass
"""


@pytest.mark.parametrize("ci,outcome", [("true", {"errors": 1}), ("", {"skipped": 1})])
def test_marked_test_errors_under_ci_and_skips_locally(pytester, monkeypatch, ci, outcome):
  monkeypatch.setenv("CI", ci)
  pytester.makeconftest("from tests.conftest import pytest_configure, pytest_runtest_setup")
  pytester.makepyfile(test_marked=_MARKED_TEST)
  result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
  result.assert_outcomes(**outcome)
  if ci:
    result.stdout.fnmatch_lines(["*no-such-data-package is not installed*under CI=true*"])
