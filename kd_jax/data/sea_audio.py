"""Offline data of SEA's `cpu` table (PAPERS.md §1; the setting of shared SEA_CPU.md, revised by
issue 23): what the sources share, and the spoken-language task.

Four domains' sources, as random-access sources for configs ("kd_jax.data.sea_sources:kit_pool",
called as `fn(split, data_dir=..., manual_dir=...)`), prepared once into `data_dir`
($KD_JAX_DATA_DIR or ~/tensorflow_datasets) as TFDS array_record in kd_sea_<name>/<config>/.
Mono float32, 16 kHz.

| function | domain | splits | "full" size | fields besides audio, sample_rate |
|---|---|---|---|---|
| `sea_general.general` | G, the teacher's; SYNTHETIC + game effects, no real drums | train/validation/test | 3 800 × 2 s | label (19 groups, for inspection), source |
| `sea_kits.kit_pool` | T, the distillation pool; REAL samples of the pool kits | train/validation/test | 3 000 × 1 s | loudness, gain_db, kit |
| `sea_kits.drums` | T, the target task; REAL one-shots of the task kits | fold1 ... fold5 (by kit) | ≈ 350 × 1 s | label (6 classes), fold, kit, instrument, filename, loudness |
| `language_id` (here) | O, other-domain task; REAL | fold1 ... fold5 (by prompt) | 2 405 × ≤ 4 s | label (en, es, fr, it, ru), fold, prompt, voice |
| `sea_render.gm_family` | O, other-domain task; SYNTHETIC (TimGM6mb) | fold1 ... fold5 (by program) | 768 × 1 s | label (16 GM families), fold, program, pitch |

Here:
- the real drum one-shots (`drum_one_shots`): hydrogen-drumkits one-shots labelled from each kit's
  drumkit.xml instrument name, and sonic-pi-samples by file-name prefix (one more "kit"); silent
  placeholders (peak < −60 dBFS) are left out where clips are made. `sea_kits` splits them by kit.
- `language_id`: the Asterisk prompts recorded in all five languages (tones and silence left
  out), first 4 s; all languages of a prompt share its fold, so the prompt's words never tell the
  language. en and es are the same speaker; fr, it, ru one speaker each (speaker ≈ language, and
  each language its own recording channel: the task tests channel and speaker as much as
  language).

Configs: "full" (the table) and "tiny" (a few clips, for tests). `manual_dir` is accepted for the
config interface and unused. Package files are found through `dpkg -L <package>` (a glob under
the package's share folder as fallback), never one fixed path: Debian moves data between
releases (the Asterisk prompts went from sounds/en/ to sounds/en_US_f_Allison/). A missing
package raises `MissingDebianPackageError`, one line naming the apt command, before any work.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import os
import pathlib
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.data import audio as audio_lib
from kd_jax.data import sources
from kd_jax.data.builders import base

RATE = 16000  # SEA_CPU.md's one front end: mono 16 kHz, 1 s windows
NUM_FOLDS = 5
DRUM_CLASSES = ("kick", "snare", "hihat", "tom", "cymbal", "percussion")
LANGUAGES = {
    "en": "asterisk-core-sounds-en-wav",
    "es": "asterisk-core-sounds-es-wav",
    "fr": "asterisk-core-sounds-fr-wav",
    "it": "asterisk-core-sounds-it-wav",
    "ru": "asterisk-core-sounds-ru-wav",
}
NON_SPEECH_PROMPTS = ("beep", "beeperr", "ascending-2tone", "descending-2tone")
MAX_SPEECH_SECONDS = 4.0
SILENT_PEAK = 1e-3  # −60 dBFS: hydrogen kits ship "emptySample" placeholders


class MissingDebianPackageError(FileNotFoundError):
  """A Debian package that provides data or a program is not installed."""


def missing_package(package: str, what: str) -> MissingDebianPackageError:
  return MissingDebianPackageError(
      f"Debian package {package} is not installed ({what}); install it with: "
      f"sudo apt-get install --no-install-recommends {package}"
  )


@functools.lru_cache(maxsize=None)
def dpkg_files(package: str) -> tuple[str, ...]:
  """What `dpkg -L package` lists; () when dpkg is absent or the package is not installed."""
  try:
    listing = subprocess.run(
        ["dpkg", "-L", package], capture_output=True, text=True, timeout=60, check=False
    )
  except (OSError, subprocess.TimeoutExpired):
    return ()
  return tuple(listing.stdout.splitlines()) if listing.returncode == 0 else ()


def package_paths(package: str, suffix: str, fallback_glob: str, what: str) -> list[pathlib.Path]:
  """Sorted existing files of `package` ending with `suffix` (else matching `fallback_glob`).

  Raises:
    MissingDebianPackageError: neither dpkg nor the glob finds any.
  """
  found = [p for p in dpkg_files(package) if p.endswith(suffix) and os.path.isfile(p)]
  if not found:
    found = [p for p in glob.glob(fallback_glob, recursive=True) if os.path.isfile(p)]
  if not found:
    raise missing_package(package, what)
  return sorted(pathlib.Path(p) for p in set(found))


def program(name: str, package: str) -> str:
  """The path of executable `name`, or MissingDebianPackageError naming `package`."""
  path = shutil.which(name)
  if path is None:
    raise missing_package(package, f"the {name} program")
  return path


# drumkit.xml instrument names → class, first match wins. Hand percussion comes first so that
# "Cowbell" or "Dununba1 Bell" never reads as a cymbal bell; unknown, looped or effect names match
# nothing and are left out.
_DRUM_RULES = (
    (None, r"\b(fx|zap|sample|whistle|roll|loop)\b|^click$"),
    (
        "percussion",
        r"cowbell|conga|bongo|djembe|cajon|tambourin|maraca|clave|wood ?block|agogo|clap|snap"
        r"|waterglass|sangban|dununba|kenkeni|shaker|tabla|triangle|guiro|cabasa|timbal",
    ),
    ("hihat", r"\b(o?hh|hi-?hat|hi hat|hihat|hat)\b"),
    ("kick", r"\b(kick|bass ?drum|bd)\b"),
    ("snare", r"\b(snare\w*|rim\w*|stick|sidestick)\b"),
    ("tom", r"\btom"),
    ("cymbal", r"crash|ride|china|splash|cymbal|\bbell\b"),
)
# sonic-pi-samples file stems → class by prefix, first match wins (the drum samples of 3.2.2;
# its "drum_cymbal_{closed,open,pedal}" are hi-hats).
SONIC_PI_PREFIXES = (
    ("hihat", ("drum_cymbal_closed", "drum_cymbal_open", "drum_cymbal_pedal")),
    ("cymbal", ("drum_cymbal_", "drum_splash_", "elec_cymbal")),
    ("kick", ("bd_", "drum_bass_", "drum_heavy_kick", "elec_hollow_kick", "elec_soft_kick")),
    ("snare", ("sn_", "drum_snare_", "elec_filt_snare", "elec_snare", "elec_hi_snare")),
    ("snare", ("elec_lo_snare", "elec_mid_snare")),
    ("tom", ("drum_tom_", "elec_fuzz_tom")),
    ("percussion", ("drum_cowbell", "tabla_", "perc_snap", "elec_triangle")),
)


def drum_label(instrument_name: str) -> str | None:
  """The class of a drumkit.xml instrument name (the part before any "(maker model)")."""
  name = re.sub(r"\(.*?\)", " ", instrument_name).lower().replace("_", " ")
  for label, pattern in _DRUM_RULES:
    if re.search(pattern, name):
      return label
  return None


def sonic_pi_label(stem: str) -> str | None:
  return next((label for label, prefixes in SONIC_PI_PREFIXES if stem.startswith(prefixes)), None)


def _local(tag: str) -> str:
  return tag.rsplit("}", 1)[-1]  # drumkit.xml may carry a namespace


def hydrogen_instruments(drumkit_xml: str | os.PathLike) -> list[tuple[str, list[pathlib.Path]]]:
  """(instrument name, its sample files) of a Hydrogen drumkit.xml, in file order.

  Old kits name one <filename> per <instrument>; newer ones one per velocity <layer> (possibly
  inside <instrumentComponent>); every one listed and present on disk is returned.
  """
  kit_dir = pathlib.Path(drumkit_xml).parent
  out = []
  for element in ET.parse(drumkit_xml).getroot().iter():
    if _local(element.tag) != "instrument":
      continue
    name = next((c.text or "" for c in element if _local(c.tag) == "name"), "")
    files = [
        kit_dir / (e.text or "").strip() for e in element.iter() if _local(e.tag) == "filename"
    ]
    out.append((name.strip(), [f for f in files if f.is_file()]))
  return out


@dataclasses.dataclass(frozen=True)
class OneShot:
  path: pathlib.Path
  kit: str
  instrument: str
  label: str
  fold: int = 0


def kit_folds(kit_labels: dict[str, list[str]], num_folds: int = NUM_FOLDS) -> dict[str, int]:
  """Kit → fold 1..num_folds, so that a kit never spans two folds and each class is spread evenly.

  Kits go largest first, each into the fold where it raises Σ_class count² the least (ties: the
  lowest fold): adding n clips of a class to a fold holding m costs (m + n)² − m², so a class
  fills the folds that have least of it — balancing totals alone put all the hand percussion of
  one kit beside almost no kicks.
  """
  classes = sorted({label for labels in kit_labels.values() for label in labels})
  counts = np.zeros((num_folds, len(classes)))
  folds = {}
  for kit in sorted(kit_labels, key=lambda k: (-len(kit_labels[k]), k)):
    add = np.array([kit_labels[kit].count(c) for c in classes], float)
    fold = int(np.argmin(np.sum((counts + add) ** 2 - counts**2, axis=1)))
    folds[kit] = fold + 1
    counts[fold] += add
  return folds


def drum_one_shots() -> list[OneShot]:
  """Every labelled one-shot of hydrogen-drumkits and sonic-pi-samples (fold 0: `sea_kits`
  deals the kits into the pool and the task's folds)."""
  shots = []
  kits = package_paths(
      "hydrogen-drumkits",
      "/drumkit.xml",
      "/usr/share/hydrogen/data/drumkits/*/drumkit.xml",
      "the Hydrogen drum kits",
  )
  for xml in kits:
    seen = set()  # one sample may serve several instruments or layers of a kit
    for name, files in hydrogen_instruments(xml):
      label = drum_label(name)
      for path in files if label else ():
        if path not in seen:
          seen.add(path)
          shots.append(OneShot(path, f"hydrogen/{xml.parent.name}", name, label))
  samples = package_paths(
      "sonic-pi-samples", ".flac", "/usr/share/sonic-pi/samples/*.flac", "the Sonic Pi samples"
  )
  for path in samples:
    label = sonic_pi_label(path.stem)
    if label:
      shots.append(OneShot(path, "sonic-pi", path.stem, label))
  return shots


def asterisk_prompts() -> dict[str, dict[str, pathlib.Path]]:
  """Language → {prompt id (path under the voice folder, no extension): WAV}, for the spoken
  prompts recorded in every language. The voice folder (e.g. sounds/fr_CA_f_June) is the common
  root of what the package installs, whatever Debian release named it."""
  prompts = {}
  for language, package in LANGUAGES.items():
    files = package_paths(
        package, ".wav", f"/usr/share/asterisk/sounds/{language}*/**/*.wav", "Asterisk prompts"
    )
    root = pathlib.Path(os.path.commonpath(files))
    ids = {str(p.relative_to(root).with_suffix("")): p for p in files}
    prompts[language] = {
        k: p for k, p in ids.items() if k not in NON_SPEECH_PROMPTS and k.split("/")[0] != "silence"
    }
  shared = set.intersection(*(set(p) for p in prompts.values()))
  return {lang: {k: p[k] for k in sorted(shared)} for lang, p in prompts.items()}


def prompt_folds(prompt_ids, num_folds: int = NUM_FOLDS, seed: int = 0) -> dict[str, int]:
  """Prompt id → fold: the sorted ids dealt round-robin in a seeded random order."""
  ids = sorted(set(prompt_ids))
  order = np.random.default_rng(seed).permutation(len(ids))
  return {ids[i]: position % num_folds + 1 for position, i in enumerate(order)}


def onset_clip(clip: np.ndarray, rate: int = RATE, seconds: float = 1.0) -> np.ndarray:
  """`seconds` from 5 ms before the first sample reaching 10 % of the peak (zero-padded)."""
  start = int(np.argmax(np.abs(clip) >= 0.1 * np.abs(clip).max()))
  start = max(0, start - int(0.005 * rate))
  length = int(round(seconds * rate))
  return audio_lib.crop_or_pad(clip[start : start + length], length)


def a_weighted_levels(clips: np.ndarray) -> np.ndarray:
  from kd_jax.data import loudness  # pylint: disable=g-import-not-at-top  (imports JAX)

  return np.asarray(loudness.a_weighted_leq(clips, RATE), np.float32)


@dataclasses.dataclass(eq=False)
class SizeConfig(tfds.core.BuilderConfig):
  size: int = 0  # clips per class (general), per kit (drum_pool), per fold and class or prompt


def audio_features(length=None):
  return {
      "audio": tfds.features.Tensor(shape=(length,), dtype=np.float32),
      "sample_rate": tfds.features.Tensor(shape=(), dtype=np.int32),
  }


class SeaBuilder(base.KdBuilder):
  VERSION = tfds.core.Version("1.0.0")
  HOMEPAGE = "https://github.com/ksangeeta2429/embedding-approx"

  def check_packages(self) -> None:
    """Raises MissingDebianPackageError before preparing, as one line (not inside TFDS)."""

  @classmethod
  def configs(cls, full: int, tiny: int):
    return [
        SizeConfig(name="full", size=full, description="the cpu table's size"),
        SizeConfig(name="tiny", size=tiny, description="a few clips, for tests"),
    ]


class SeaLanguage(SeaBuilder):
  """O's downstream task (REAL): spoken-language ID on Asterisk prompts, folds by prompt."""

  name = "kd_sea_language"
  BUILDER_CONFIGS = SeaBuilder.configs(0, 1)
  DESCRIPTION = "SEA cpu other-domain task: real Asterisk prompts, 5 languages, folds by prompt."

  def check_packages(self):
    asterisk_prompts()

  def _features(self):
    return {
        **audio_features(),
        "label": tfds.features.ClassLabel(names=tuple(LANGUAGES)),
        "fold": tfds.features.Tensor(shape=(), dtype=np.int32),
        "prompt": tfds.features.Text(),
        "voice": tfds.features.Text(),
    }

  def _split_generators(self, dl_manager):
    del dl_manager
    prompts = asterisk_prompts()
    folds = prompt_folds(prompts["en"])
    if self.builder_config.size:  # tiny: the first `size` prompts of each fold
      keep = [
          k
          for f in range(1, NUM_FOLDS + 1)
          for k in sorted(p for p in folds if folds[p] == f)[: self.builder_config.size]
      ]
      folds = {k: folds[k] for k in keep}
    return {
        f"fold{k}": self._generate_examples(prompts, [p for p in sorted(folds) if folds[p] == k], k)
        for k in range(1, NUM_FOLDS + 1)
    }

  def _generate_examples(self, prompts, ids, fold):
    for language, files in prompts.items():
      voice = pathlib.Path(os.path.commonpath(list(files.values()))).name  # e.g. fr_CA_f_June
      for prompt in ids:
        clip, _ = audio_lib.decode_audio(files[prompt], sample_rate=RATE)
        yield f"{language}/{prompt}", {
            "audio": clip[: int(MAX_SPEECH_SECONDS * RATE)],
            "sample_rate": RATE,
            "label": list(LANGUAGES).index(language),
            "fold": fold,
            "prompt": prompt,
            "voice": voice,
        }


def open_source(cls, split: str, data_dir, config: str) -> sources.DataSource:
  """Prepares `cls` once into data_dir (checking its packages first) and opens `split`."""
  data_dir = str(data_dir or sources.default_data_dir())
  builder = cls(data_dir=data_dir, config=config)
  if not builder.is_prepared():
    builder.check_packages()
    try:
      builder.download_and_prepare(file_format="array_record")
    except OSError:
      # Another process may have prepared the same folder first (TFDS renames it into place).
      builder = cls(data_dir=data_dir, config=config)
      if not builder.is_prepared():
        raise
  try:
    return sources.DataSource(builder.as_data_source(split=split), builder.info, split)
  except (ValueError, KeyError) as e:
    raise ValueError(
        f"Bad split {split!r} for {builder.name}; splits: {sorted(builder.info.splits)}."
    ) from e


def language_id(split, *, data_dir=None, manual_dir=None, config="full"):
  """O task: REAL Asterisk prompts, 5 languages, "fold" 1..5 by prompt; splits fold1..fold5."""
  del manual_dir
  return open_source(SeaLanguage, split, data_dir, config)
