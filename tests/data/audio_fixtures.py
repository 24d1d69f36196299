"""Writes tiny UrbanSound8K / ESC-50 / SONYC-UST trees in their exact official layouts.

The clips are real recordings from Debian packages (shared DATA.md): Asterisk's spoken prompts
(8 kHz mono WAV, `asterisk-core-sounds-en-wav`) and Sonic Pi's one-shots (44.1 kHz FLAC, mono and
stereo, `sonic-pi-samples`). Only the file layout, names and metadata columns imitate the real
datasets; which class a fixture clip is filed under is arbitrary (a spoken digit is no siren).
"""

from __future__ import annotations

import csv
import pathlib

import numpy as np

from tests import system_data

# Located through the packages (the prompts moved from sounds/en/ to sounds/en_US_f_Allison/).
ASTERISK = system_data.asterisk_sounds() or system_data.NOT_INSTALLED
_CROW = system_data.find(
    "sonic-pi-samples", "/misc_crow.flac", "/usr/share/sonic-pi/samples/misc_crow.flac"
)
SONIC_PI = _CROW.parent if _CROW else system_data.NOT_INSTALLED

needs_recordings = [
    system_data.needs("asterisk-core-sounds-en-wav", (ASTERISK / "digits" / "1.wav").is_file()),
    system_data.needs("sonic-pi-samples", (SONIC_PI / "misc_crow.flac").is_file()),
]

# Real recordings in a fixed order: 8 kHz and 44.1 kHz, mono and stereo, 0.1 s to 2.5 s long.
SOURCES = [
    ASTERISK / "digits" / "1.wav",
    SONIC_PI / "misc_crow.flac",
    SONIC_PI / "ambi_choir.flac",
    ASTERISK / "digits" / "2.wav",
    SONIC_PI / "bd_gas.flac",
    SONIC_PI / "elec_soft_kick.flac",
    ASTERISK / "digits" / "3.wav",
    SONIC_PI / "drum_tom_hi_soft.flac",
    SONIC_PI / "sn_dub.flac",
    ASTERISK / "digits" / "4.wav",
    SONIC_PI / "glitch_robot1.flac",
    SONIC_PI / "perc_bell.flac",
]


def _read(path):
  import soundfile

  audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
  return audio, rate


def _write(path, audio, rate, subtype="PCM_16"):
  import soundfile

  path.parent.mkdir(parents=True, exist_ok=True)
  soundfile.write(path, audio, rate, subtype=subtype)


def _fit(audio, rate, seconds):
  """Tiles / cuts a recording to `seconds` (ESC-50 and SONYC-UST clips have fixed lengths)."""
  length = int(seconds * rate)
  reps = -(-length // len(audio))
  return np.concatenate([audio] * reps)[:length]


US8K_CLASSES = (
    "air_conditioner",
    "car_horn",
    "children_playing",
    "dog_bark",
    "drilling",
    "engine_idling",
    "gun_shot",
    "jackhammer",
    "siren",
    "street_music",
)


def write_urbansound8k(root: pathlib.Path) -> list[dict]:
  """12 slices: one in every fold 1..10, two extra in fold 1 and 2; mixed WAV formats."""
  rows = []
  for i, source in enumerate(SOURCES):
    fold = i + 1 if i < 10 else i - 9
    class_id = (3 * i) % 10
    name = f"{1000 + i}-{class_id}-0-{i % 3}.wav"
    audio, rate = _read(source)
    # UrbanSound8K ships 16- and 24-bit PCM at several rates; keep each recording's own rate.
    _write(
        root / "audio" / f"fold{fold}" / name, audio, rate, subtype="PCM_24" if i % 2 else "PCM_16"
    )
    rows.append(
        {
            "slice_file_name": name,
            "fsID": 1000 + i,
            "start": 0.0,
            "end": round(len(audio) / rate, 6),
            "salience": 1 + i % 2,
            "fold": fold,
            "classID": class_id,
            "class": US8K_CLASSES[class_id],
        }
    )
  (root / "metadata").mkdir(parents=True, exist_ok=True)
  with open(root / "metadata" / "UrbanSound8K.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  for fold in range(1, 11):
    (root / "audio" / f"fold{fold}").mkdir(parents=True, exist_ok=True)
  return rows


ESC50_CATEGORIES = {9: "crow", 0: "dog", 20: "crying_baby", 37: "clock_alarm", 42: "siren"}


def write_esc50(root: pathlib.Path) -> list[dict]:
  """10 five-second 44.1 kHz mono clips, 2 per fold; misc_crow really is a crow (target 9)."""
  rows = []
  targets = sorted(ESC50_CATEGORIES)
  for i, source in enumerate(SOURCES[:10]):
    fold, target = i % 5 + 1, targets[i % len(targets)]
    if source.name == "misc_crow.flac":
      target = 9
    src_file = str(200000 + i)
    name = f"{fold}-{src_file}-A-{target}.wav"
    audio, rate = _read(source)
    if rate != 44100:  # ESC-50 is 44.1 kHz; bring the 8 kHz prompts there first.
      from scipy import signal

      audio = signal.resample_poly(audio, 441, 80, axis=0).astype(np.float32)
      rate = 44100
    clip = _fit(audio.mean(axis=1), rate, 5.0)
    _write(root / "audio" / name, clip, rate)
    rows.append(
        {
            "filename": name,
            "fold": fold,
            "target": target,
            "category": ESC50_CATEGORIES[target],
            "esc10": str(target in (0, 20, 42)),
            "src_file": src_file,
            "take": "A",
        }
    )
  (root / "meta").mkdir(parents=True, exist_ok=True)
  with open(root / "meta" / "esc50.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return rows


SONYC_COARSE = (
    "engine",
    "machinery-impact",
    "non-machinery-impact",
    "powered-saw",
    "alert-signal",
    "music",
    "human-voice",
    "dog",
)
SONYC_FINE = {
    1: [
        "small-sounding-engine",
        "medium-sounding-engine",
        "large-sounding-engine",
        "engine-of-uncertain-size",
    ],
    2: ["rock-drill", "jackhammer", "hoe-ram", "pile-driver", "other-unknown-impact-machinery"],
    3: ["non-machinery-impact"],
    4: ["chainsaw", "small-medium-rotating-saw", "large-rotating-saw", "other-unknown-powered-saw"],
    5: ["car-horn", "car-alarm", "siren", "reverse-beeper", "other-unknown-alert-signal"],
    6: ["stationary-music", "mobile-music", "ice-cream-truck", "music-from-uncertain-source"],
    7: [
        "person-or-small-group-talking",
        "person-or-small-group-shouting",
        "large-crowd",
        "amplified-speech",
        "other-unknown-human-voice",
    ],
    8: ["dog-barking-whining"],
}

# Each recording: split, sensor, annotations as (annotator_id, coarse presence vector), and the
# targets a reader of the SONYC-UST rules expects (verified if any, else volunteer majority).
SONYC_RECORDINGS = [
    (
        "00_000001.wav",
        "train",
        1,
        [
            (11, [1, 0, 0, 0, 0, 0, 1, 0]),
            (12, [1, 0, 0, 0, 0, 0, 0, 0]),
            (13, [0, 0, 0, 0, 0, 0, 1, 0]),
        ],
        [1, 0, 0, 0, 0, 0, 1, 0],
    ),
    (
        "00_000002.wav",
        "train",
        1,
        [
            (11, [0, 0, 0, 0, 1, 0, 0, 1]),
            (14, [0, 0, 0, 0, 0, 0, 0, 0]),
            (15, [0, 0, 0, 0, 0, 0, 0, 1]),
        ],
        [0, 0, 0, 0, 0, 0, 0, 1],
    ),
    (
        "05_000003.wav",
        "train",
        5,
        [(12, [0, 1, 0, 1, 0, 0, 0, 0]), (16, [0, 1, 0, 0, 0, 0, 0, 0])],
        [0, 1, 0, 1, 0, 0, 0, 0],
    ),
    (
        "07_000004.wav",
        "validate",
        7,
        [
            (11, [1, 0, 0, 0, 0, 1, 0, 0]),
            (17, [1, 0, 0, 0, 0, 1, 0, 0]),
            (0, [0, 0, 0, 0, 0, 1, 0, 0]),
            (-1, [0, 0, 0, 0, 0, 1, -1, -1]),
        ],
        [0, 0, 0, 0, 0, 1, 0, 0],
    ),
    (
        "07_000005.wav",
        "validate",
        7,
        [
            (18, [0, 0, 1, 0, 0, 0, 0, 0]),
            (19, [0, 0, 0, 0, 0, 0, 0, 0]),
            (20, [0, 0, 0, 0, 0, 0, 0, 0]),
        ],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ),
    (
        "09_000006.wav",
        "test",
        1,
        [(0, [0, 0, 0, 0, 1, 0, 1, 0]), (21, [0, 0, 0, 0, 0, 0, 1, 0])],
        [0, 0, 0, 0, 1, 0, 1, 0],
    ),
]


def sonyc_columns():
  """The official annotations.csv header: metadata, fine and coarse presence, fine proximity."""
  fine = []
  for c, names in SONYC_FINE.items():
    for f, name in enumerate(names, start=1):
      uncertain = name.startswith(("other-unknown", "engine-of-uncertain", "music-from-uncertain"))
      fine.append(f"{c}-{'X' if uncertain else f}_{name}")
  return (
      [
          "split",
          "sensor_id",
          "audio_filename",
          "annotator_id",
          "borough",
          "block",
          "latitude",
          "longitude",
          "year",
          "week",
          "day",
          "hour",
      ]
      + [f + "_presence" for f in fine]
      + [f"{c}_{name}_presence" for c, name in enumerate(SONYC_COARSE, start=1)]
      + [f + "_proximity" for f in fine]
  )


def write_sonyc_ust(root: pathlib.Path) -> list[tuple]:
  """6 ten-second recordings (train 3 / validate 2 / test 1) and their annotation rows."""
  columns = sonyc_columns()
  rows = []
  for i, (name, split, sensor, annotations, _) in enumerate(SONYC_RECORDINGS):
    audio, rate = _read(SOURCES[i + 2])
    _write(root / "audio" / name, _fit(audio, rate, 10.0), rate)
    for annotator, coarse in annotations:
      row = {c: -1 for c in columns}
      row.update(
          split=split,
          sensor_id=sensor,
          audio_filename=name,
          annotator_id=annotator,
          borough=1,
          block=500 + sensor,
          latitude=40.7,
          longitude=-73.99,
          year=2019,
          week=10,
          day=i % 7,
          hour=9,
      )
      for c, (value, label) in enumerate(zip(coarse, SONYC_COARSE), start=1):
        row[f"{c}_{label}_presence"] = value
        for column in columns:  # Fine columns of this coarse class follow its presence.
          if column.startswith(f"{c}-") and column.endswith("_presence"):
            row[column] = value if value >= 0 else -1
      rows.append(row)
  with open(root / "annotations.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
  return SONYC_RECORDINGS
