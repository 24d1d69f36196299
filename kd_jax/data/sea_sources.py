"""The data sources the SEA table's configs name (experiments/configs/sea.py), as plain functions.

A config holds only data: a dataset is a "package.module:function" string that the trainer calls
as `fn(split, data_dir=..., manual_dir=...)`. The SEA sources need two things a bare
`kd_jax.data.sea_audio` function does not give: a size fixed per entry ("full" for the table,
"tiny" for the smoke test: one name each, since a config cannot pass the size through the
trainer's call), and the Debian packages they read, installed on demand when the process may
(root, as `make` does for the tests) or else named in one line. The paper variant's pool is
SONYC-UST at 48 kHz from the official layout under $KD_JAX_SEA_MANUAL/sonyc_ust.
"""

from __future__ import annotations

import os
import subprocess

# What kd_jax.data.sea_audio / sea_kits / sea_general / sea_render read
# (scripts/install_system_data.sh installs them).
SEA_PACKAGES = (
    "hydrogen-drumkits",
    "sonic-pi-samples",
    "fluidsynth",
    "fluid-soundfont-gm",
    "timgm6mb-soundfont",
    "espeak-ng",
    "ufoai-sound",
    "wordwarvi-sound",
    *(f"asterisk-core-sounds-{lang}-wav" for lang in ("en", "es", "fr", "it", "ru")),
)
INSTALL_SCRIPT = os.path.join(
    os.path.dirname(__file__), "..", "..", "scripts", "install_system_data.sh"
)


def missing_packages() -> list[str]:
  """The SEA packages dpkg does not report as installed."""
  return [
      p for p in SEA_PACKAGES if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode
  ]


def ensure_packages() -> None:
  """Installs the SEA Debian packages when root (as `make` does for the tests), else stops with
  one line naming the missing ones: a run should fail before its first step, not inside a
  worker halfway through preparing a dataset."""
  if missing_packages() and os.geteuid() == 0:
    subprocess.run(["bash", INSTALL_SCRIPT], check=False)
  if missing_packages() and os.geteuid() == 0:  # a package the script does not list (yet)
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing_packages()]
    subprocess.run(command, check=False, capture_output=True)
  absent = missing_packages()
  if absent:
    raise RuntimeError(
        "SEA table: Debian packages missing: " + " ".join(absent) + "; install them with: "
        "sudo apt-get install --no-install-recommends " + " ".join(absent)
    )


def _sea_source(module: str, function: str, size: str):
  """kd_jax.data.<module>.<function> at `size` ("full" / "tiny") as a `package.module:function`
  dataset."""

  def source(split, *, data_dir=None, manual_dir=None):
    import importlib  # pylint: disable=g-import-not-at-top
    from kd_jax.data import sea_audio  # pylint: disable=g-import-not-at-top  (TFDS builders)

    build = getattr(importlib.import_module(f"kd_jax.data.{module}"), function)
    try:
      return build(split, data_dir=data_dir, manual_dir=manual_dir, config=size)
    except sea_audio.MissingDebianPackageError:
      ensure_packages()  # installs (root) or raises naming every missing package
      return build(split, data_dir=data_dir, manual_dir=manual_dir, config=size)

  source.__name__ = source.__qualname__ = f"{function}_{size}"
  return source


general_full = _sea_source("sea_general", "general", "full")
general_tiny = _sea_source("sea_general", "general", "tiny")
kit_pool_full = _sea_source("sea_kits", "kit_pool", "full")
kit_pool_tiny = _sea_source("sea_kits", "kit_pool", "tiny")
drums_full = _sea_source("sea_kits", "drums", "full")
drums_tiny = _sea_source("sea_kits", "drums", "tiny")
language_full = _sea_source("sea_audio", "language_id", "full")
language_tiny = _sea_source("sea_audio", "language_id", "tiny")
gm_family_full = _sea_source("sea_render", "gm_family", "full")
gm_family_tiny = _sea_source("sea_render", "gm_family", "tiny")


def paper_pool(split, *, data_dir=None, manual_dir=None):
  """SONYC-UST at 48 kHz from $KD_JAX_SEA_MANUAL/sonyc_ust (the official layout); the config's
  `manual_dir` is ignored because the pool's location is the user's, read at run time."""
  del manual_dir
  from kd_jax import data  # pylint: disable=g-import-not-at-top

  root = os.environ.get("KD_JAX_SEA_MANUAL", "")
  return data.get_source(
      "sonyc_ust/48k", split, data_dir=data_dir, manual_dir=os.path.join(root, "sonyc_ust")
  )
