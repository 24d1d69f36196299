"""Where the Debian data packages put their files, and what a test does when one is missing.

Files are located through the package (`dpkg -L`), falling back to a glob, never through one
hard-coded directory: Debian moved the Asterisk prompts from sounds/en/ to
sounds/en_US_f_Allison/, and a fixed path turned every real-audio test into a silent skip.

`make test` installs these packages (scripts/install_system_data.sh). Under CI (`CI=true`) a
missing package is therefore a failure, not a skip: a green CI must mean the tests ran. Locally
(no CI variable) the test is skipped with the apt-get command that installs the data.
"""

from __future__ import annotations

import functools
import glob
import os
import pathlib
import subprocess
from typing import Optional

import pytest

INSTALL = "make system-data (or apt-get install {package})"
# Where a test's data path points when its package is not installed: never a real folder, so the
# file checks fail and `needs` reports the missing package.
NOT_INSTALLED = pathlib.Path("/nonexistent/data-package-not-installed")


def on_ci() -> bool:
  return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@functools.lru_cache(maxsize=None)
def package_files(package: str) -> tuple[str, ...]:
  """Paths `dpkg -L package` lists; () when dpkg or the package is absent."""
  try:
    listing = subprocess.run(
        ["dpkg", "-L", package], capture_output=True, text=True, timeout=30, check=False
    )
  except (OSError, subprocess.TimeoutExpired):
    return ()
  return tuple(listing.stdout.split()) if listing.returncode == 0 else ()


def find(package: str, suffix: str, fallback_glob: str) -> Optional[pathlib.Path]:
  """The first existing file of `package` whose path ends with `suffix`, else of the glob."""
  candidates = [p for p in package_files(package) if p.endswith(suffix)]
  candidates += sorted(glob.glob(fallback_glob))
  for candidate in candidates:
    if os.path.isfile(candidate):
      return pathlib.Path(candidate)
  return None


def asterisk_sounds() -> Optional[pathlib.Path]:
  """The English Asterisk prompts' directory (sounds/en or sounds/en_US_f_Allison), or None."""
  digit = find(
      "asterisk-core-sounds-en-wav", "/digits/1.wav", "/usr/share/asterisk/sounds/en*/digits/1.wav"
  )
  return digit.parent.parent if digit else None


def missing_data(package: str, install: Optional[str] = None) -> None:
  """Fails (CI) or skips (locally) the running test because `package` is not installed."""
  message = (
      f"the data package {package} is not installed: "
      f"{install or INSTALL.format(package=package)}"
  )
  if on_ci():
    pytest.fail(
        f"{message}; under CI=true missing test data is an error, not a skip.", pytrace=False
    )
  pytest.skip(message)


def needs(package: str, available: bool):
  """A marker for tests that read `package`'s files (evaluated by tests/conftest.py)."""
  return pytest.mark.needs_data(package=package, available=bool(available))
