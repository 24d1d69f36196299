"""Missing test data fails under CI and skips locally; package files are found through dpkg."""

import pytest

from tests import system_data


def test_missing_data_fails_under_ci(monkeypatch):
  monkeypatch.setenv("CI", "true")
  with pytest.raises(pytest.fail.Exception, match="dataset-fashion-mnist is not installed.*"
                                                  "under CI=true missing test data is an error"):
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
  assert system_data.find("asterisk-core-sounds-en-wav", "/no/such/file.wav", "/nonexistent*") \
      is None
