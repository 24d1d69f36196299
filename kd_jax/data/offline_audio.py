"""An offline audio classification corpus from real recordings, in the UrbanSound8K layout.

No standard audio benchmark can be downloaded on offline machines (shared DATA.md), but the
Debian package `sonic-pi-samples` ships 164 real recordings (CC0 / CC-BY) whose file-name prefix
names the instrument family. The ten largest families (150 clips) are written as an UrbanSound8K
tree (metadata/UrbanSound8K.csv + audio/fold1..10), so the very builder that reads the real
UrbanSound8K reads this corpus too ("sonic_pi" in `get_source`). Clips are cut to UrbanSound8K's
4 s maximum and keep their own rate and channels; each class's clips are dealt round-robin over
the folds, so every class is spread evenly over them.
"""

from __future__ import annotations

import csv
import os
import pathlib

from kd_jax.data.builders import urbansound8k

SONIC_PI_DIR = "/usr/share/sonic-pi/samples"
# The ten most frequent name prefixes of sonic-pi-samples 3.2.2, sorted.
SONIC_PI_CLASSES = (
    "ambi",
    "bass",
    "bd",
    "drum",
    "elec",
    "glitch",
    "loop",
    "mehackit",
    "perc",
    "tabla",
)
MAX_SECONDS = 4.0


def write_sonic_pi_corpus(
    root: str | os.PathLike, *, samples_dir: str | os.PathLike = SONIC_PI_DIR
) -> list[dict]:
  """Writes the UrbanSound8K-layout corpus under `root`; returns its metadata rows."""
  import soundfile  # pylint: disable=g-import-not-at-top

  samples_dir, root = pathlib.Path(samples_dir), pathlib.Path(root)
  files = sorted(samples_dir.glob("*.flac"))
  if not files:
    raise FileNotFoundError(
        f"No Sonic Pi samples in {samples_dir}: apt-get install "
        "sonic-pi-samples (the Makefile's system-data target does)."
    )
  rows = []
  for class_id, name in enumerate(SONIC_PI_CLASSES):
    members = [f for f in files if f.name.split("_")[0] == name]
    for position, path in enumerate(members):
      fold = position % urbansound8k.NUM_FOLDS + 1
      audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
      audio = audio[: int(MAX_SECONDS * rate)]
      slice_name = f"{class_id * 1000 + position}-{class_id}-0-0.wav"
      target = root / "audio" / f"fold{fold}" / slice_name
      target.parent.mkdir(parents=True, exist_ok=True)
      soundfile.write(target, audio, rate, subtype="PCM_16")
      rows.append(
          {
              "slice_file_name": slice_name,
              "fsID": class_id * 1000 + position,
              "start": 0.0,
              "end": round(len(audio) / rate, 6),
              "salience": 1,
              "fold": fold,
              "classID": class_id,
              "class": name,
              "source": path.name,
          }
      )
  (root / "metadata").mkdir(parents=True, exist_ok=True)
  with open(root / "metadata" / "UrbanSound8K.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return rows


class SonicPi(urbansound8k.UrbanSound8k):
  """The Sonic Pi corpus read by the UrbanSound8K builder: 10 instrument families, 10 folds."""

  name = "kd_sonic_pi"
  CLASSES = SONIC_PI_CLASSES
  DESCRIPTION = (
      "150 real Sonic Pi recordings (Debian sonic-pi-samples), 10 instrument families "
      "from the file-name prefix, in the UrbanSound8K layout with 10 folds."
  )
  HOMEPAGE = "https://sonic-pi.net"
  CITATION = ""
