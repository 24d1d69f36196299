"""T, the target domain of SEA's `cpu` table: REAL recorded drums, split by kit into the
distillation pool and the downstream task.

The real drum one-shots (`sea_audio.drum_one_shots`: the 14 kits of `hydrogen-drumkits`, each
labelled from its drumkit.xml, and `sonic-pi-samples`' drum samples as one more kit) are grouped
into kit families — kits that share a sample file name or the first word of their name (a maker's
kits, e.g. the three "Millo" kits) — and the families are dealt into two sides with
`sea_audio.kit_folds` (classes spread evenly over the two): side 1 holds the task kits, side 2 the
pool kits. No kit, family or file is on both sides (`kit_split`).

- `kit_pool` (the distillation pool, unlabelled): one-second "drum soundscapes" rendered from the
  pool kits' one-shots: a kit, a tempo of 70–180 BPM on a 16th-note grid and, per instrument
  class the kit has, a random part (`sea_render.DRUM_ROLES`: how often a class plays and hits),
  each hit one of one or two of that class's samples at a random level (−12…0 dB); overlapping
  hits add up (layering). The mix is scaled to a random peak of −40…0 dBFS ("gain_db", the level
  spread SEA's SPL-informed sampling ranks) and "loudness" is its A-weighted Leq
  (`kd_jax.data.loudness.a_weighted_leq`). Splits 80/10/10 at random.
- `drums` (the target task): the task kits' one-shots in 6 classes, each clip 5 ms before its
  onset, cut or padded to 1 s; folds 1..5 by kit family (`sea_audio.kit_folds`), so a classifier
  is always scored on kits it never saw.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import re

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.data import audio as audio_lib
from kd_jax.data import sea_audio
from kd_jax.data import sea_render

RATE = sea_audio.RATE
TASK_SIDE, POOL_SIDE = 1, 2
HIT_DB = (-12.0, 0.0)
POOL_PEAK_DB = (-40.0, 0.0)


def kit_families(shots: list[sea_audio.OneShot]) -> dict[str, str]:
  """Kit → its family: kits joined when they share a sample file name or the first word (of 4+
  letters) of their name, so a maker's kits, which may reuse recordings, stay together."""
  parent = {shot.kit: shot.kit for shot in shots}

  def root(kit):
    while parent[kit] != kit:
      kit = parent[kit]
    return kit

  def join(a, b):
    parent[root(a)] = root(b)

  first = {}
  for shot in shots:
    for key in (("file", shot.path.name), ("word", _first_word(shot.kit))):
      join(shot.kit, first.setdefault(key, shot.kit))
  return {kit: root(kit) for kit in sorted(parent)}


def _first_word(kit: str) -> str:
  words = [w for w in re.findall(r"[a-z]+", kit.rsplit("/", 1)[-1].lower()) if len(w) >= 4]
  return words[0] if words else kit


@dataclasses.dataclass(frozen=True)
class KitSplit:
  """The task's and the pool's one-shots (task shots carry their fold 1..5)."""

  task: list[sea_audio.OneShot]
  pool: list[sea_audio.OneShot]


def kit_split(shots: list[sea_audio.OneShot] | None = None) -> KitSplit:
  """Families dealt into the task and pool sides; the task's families into 5 folds."""
  shots = sea_audio.drum_one_shots() if shots is None else shots
  family = kit_families(shots)
  labels = collections.defaultdict(list)
  for shot in shots:
    labels[family[shot.kit]].append(shot.label)
  side = sea_audio.kit_folds(labels, 2)
  task_families = {f: labels[f] for f in labels if side[f] == TASK_SIDE}
  if len(task_families) < sea_audio.NUM_FOLDS:
    raise ValueError(
        f"kit_split: {len(task_families)} task kit families cannot fill "
        f"{sea_audio.NUM_FOLDS} folds by kit."
    )
  folds = sea_audio.kit_folds(task_families)
  task = [
      dataclasses.replace(s, fold=folds[family[s.kit]]) for s in shots if family[s.kit] in folds
  ]
  pool = [dataclasses.replace(s, fold=0) for s in shots if side[family[s.kit]] == POOL_SIDE]
  return KitSplit(task, pool)


class SeaDrums(sea_audio.SeaBuilder):
  """T's downstream task (REAL): the task kits' one-shots, 6 classes, 5 folds by kit."""

  name = "kd_sea_drums"
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"2.0.0": "Task kits only: the pool kits are the distillation pool (issue 23)."}
  BUILDER_CONFIGS = sea_audio.SeaBuilder.configs(0, 1)
  DESCRIPTION = "SEA cpu target task: real drum one-shots of the task kits, 6 classes."

  def check_packages(self):
    kit_split()

  def _features(self):
    return {
        **sea_audio.audio_features(RATE),
        "label": tfds.features.ClassLabel(names=sea_audio.DRUM_CLASSES),
        "fold": tfds.features.Tensor(shape=(), dtype=np.int32),
        "kit": tfds.features.Text(),
        "instrument": tfds.features.Text(),
        "filename": tfds.features.Text(),
        "loudness": tfds.features.Tensor(shape=(), dtype=np.float32),
    }

  def shots(self) -> list[sea_audio.OneShot]:
    shots, size = kit_split().task, self.builder_config.size
    if size:  # tiny: the first `size` shots of each (fold, class)
      count, keep = collections.Counter(), []
      for shot in shots:
        count[(shot.fold, shot.label)] += 1
        if count[(shot.fold, shot.label)] <= size:
          keep.append(shot)
      shots = keep
    return shots

  def _split_generators(self, dl_manager):
    del dl_manager
    shots = self.shots()
    return {
        f"fold{k}": self._generate_examples([s for s in shots if s.fold == k])
        for k in range(1, sea_audio.NUM_FOLDS + 1)
    }

  def _generate_examples(self, shots):
    for shot in shots:
      clip, _ = audio_lib.decode_audio(shot.path, sample_rate=RATE)
      if np.abs(clip).max(initial=0.0) < sea_audio.SILENT_PEAK:
        continue
      clip = sea_audio.onset_clip(clip)
      yield f"{shot.kit}/{shot.path.name}", {
          "audio": clip,
          "sample_rate": RATE,
          "label": sea_audio.DRUM_CLASSES.index(shot.label),
          "fold": shot.fold,
          "kit": shot.kit,
          "instrument": shot.instrument,
          "filename": str(shot.path),
          "loudness": sea_audio.a_weighted_levels(clip[None])[0],
      }


def render_soundscape(
    rng: np.random.Generator, samples: dict[str, list[np.ndarray]], length: int = RATE
) -> np.ndarray:
  """One soundscape [length] at peak 1 from one kit's decoded one-shots {class: [clips]}."""
  step = 60.0 / rng.uniform(70.0, 180.0) / 4.0 * RATE
  start = rng.uniform(0.0, step)
  out = np.zeros(length + RATE, np.float64)  # room for a hit's tail; cut at the end
  for role, (_, p_plays, p_hit) in sea_render.DRUM_ROLES.items():
    if role not in samples or rng.random() >= p_plays:
      continue
    chosen = rng.choice(len(samples[role]), size=min(2, len(samples[role])), replace=False)
    for onset in np.arange(start, length - 0.05 * RATE, step):
      if rng.random() < p_hit:
        clip = samples[role][int(rng.choice(chosen))][:RATE]
        at = int(onset)
        out[at : at + len(clip)] += clip * 10.0 ** (rng.uniform(*HIT_DB) / 20.0)
  out = out[:length]
  if np.abs(out).max() == 0.0:  # every soundscape holds at least one hit
    role = sorted(samples)[int(rng.integers(len(samples)))]
    clip = samples[role][int(rng.integers(len(samples[role])))][:length]
    out[: len(clip)] += clip
  return (out / np.abs(out).max()).astype(np.float32)


@functools.lru_cache(maxsize=1)
def pool_samples() -> dict[str, dict[str, list[np.ndarray]]]:
  """The pool kits' one-shots, decoded once per process: {kit: {class: [clips at peak 1]}}."""
  kits = collections.defaultdict(lambda: collections.defaultdict(list))
  for shot in kit_split().pool:
    clip, _ = audio_lib.decode_audio(shot.path, sample_rate=RATE)
    if np.abs(clip).max(initial=0.0) >= sea_audio.SILENT_PEAK:
      clip = sea_audio.onset_clip(clip)
      kits[shot.kit][shot.label].append(clip / np.abs(clip).max())
  return {kit: dict(classes) for kit, classes in kits.items()}


class SeaKitPool(sea_audio.SeaBuilder):
  """T's distillation pool (REAL samples, random patterns): soundscapes from the pool kits."""

  name = "kd_sea_kit_pool"
  BUILDER_CONFIGS = sea_audio.SeaBuilder.configs(3000, 80)  # clips in all
  DESCRIPTION = "SEA cpu target pool: 1 s soundscapes of the pool kits' real one-shots."

  def check_packages(self):
    kit_split()

  def _features(self):
    return {
        **sea_audio.audio_features(RATE),
        "loudness": tfds.features.Tensor(shape=(), dtype=np.float32),
        "gain_db": tfds.features.Tensor(shape=(), dtype=np.float32),
        "kit": tfds.features.Text(),
    }

  def _split_generators(self, dl_manager):
    del dl_manager
    size = self.builder_config.size
    order = np.random.default_rng(7).permutation(size)
    cut = [int(0.8 * size), int(0.9 * size)]
    parts = dict(zip(("train", "validation", "test"), np.split(order, cut)))
    return {name: self._generate_examples(np.sort(index)) for name, index in parts.items()}

  def _generate_examples(self, indices):
    kits = pool_samples()
    names = sorted(kits)
    clips, kit_names, gains = [], [], []
    for index in indices:
      rng = np.random.default_rng([11, int(index)])  # one clip per index, whatever the split
      kit_names.append(names[int(rng.integers(len(names)))])
      gains.append(float(rng.uniform(*POOL_PEAK_DB)))
      clips.append(
          render_soundscape(rng, kits[kit_names[-1]]) * np.float32(10.0 ** (gains[-1] / 20.0))
      )
    clips = np.stack(clips) if clips else np.zeros((0, RATE), np.float32)
    levels = np.concatenate(
        [sea_audio.a_weighted_levels(clips[i : i + 256]) for i in range(0, len(clips), 256)] or [[]]
    )
    for index, clip, level, gain_db, kit in zip(indices, clips, levels, gains, kit_names):
      yield f"{int(index):06d}", {
          "audio": clip,
          "sample_rate": RATE,
          "loudness": np.float32(level),
          "gain_db": np.float32(gain_db),
          "kit": kit,
      }


def kit_pool(split, *, data_dir=None, manual_dir=None, config="full"):
  """T pool: REAL one-shots of the pool kits in random 1 s soundscapes, −40…0 dBFS peak, with
  "loudness" (A-weighted Leq, dBFS)."""
  del manual_dir  # from Debian packages
  return sea_audio.open_source(SeaKitPool, split, data_dir, config)


def drums(split, *, data_dir=None, manual_dir=None, config="full"):
  """T task: REAL one-shots of the task kits, 6 classes; splits fold1..fold5 by kit family."""
  del manual_dir
  return sea_audio.open_source(SeaDrums, split, data_dir, config)
