"""Rendered (SYNTHETIC) audio of SEA's `cpu` table: General-MIDI notes and drum grooves played by
`fluidsynth` from the soundfonts of `fluid-soundfont-gm` (FluidR3_GM, MIT) and
`timgm6mb-soundfont` (TimGM6mb, GPL-2), and speech from `espeak-ng` (shared SEA_CPU.md). The
soundfonts hold recorded instrument samples, but every performance (pitch, timing, velocity) is
generated. FluidR3_GM voices the general domain G (`kd_jax.data.sea_general`); TimGM6mb, an
independent sample set, voices only the other-domain task here:

- `gm_family` (an other-domain task): one note per clip of every one of the 128 melodic programs
  (`size` notes each at random pitches in the family's range, velocity 40-127, 0.25-0.9 s long,
  a random peak of −30…−6 dBFS so that loudness tells nothing), label = GM family
  (program // 8, 16 classes), folds by program: program 8·family + i is in fold i mod 5 + 1, so
  every fold holds every family and a classifier is always scored on programs it never heard.
  Not decided by recording channel (one renderer for every class), unlike the language task.

Rendering is batched: one Standard MIDI File holds hundreds of slots (one second, or `slot_ms`)
back to back, each ending with All Sound Off, and one `fluidsynth -F` call renders it much faster
than real time; slot k is samples [k·L, (k+1)·L) of the output. Reverb and chorus are off, so no
tail crosses into the next slot and a note's spectrum is the sample's own.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import struct
import subprocess
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.data import audio as audio_lib
from kd_jax.data import sea_audio

SAMPLE_RATE = sea_audio.RATE
SLOT_MS = 1000
# fluidsynth's master gain; its default 0.2 leaves single notes near -30 dBFS. Output is float,
# so a dense groove above full scale is not clipped here (callers rescale).
FLUIDSYNTH_GAIN = 0.5
SLOTS_PER_RENDER = 512  # ~65 MB of float stereo per temporary file at 16 kHz

GM_FAMILIES = (
    "piano",
    "chromatic_percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth_lead",
    "synth_pad",
    "synth_effects",
    "ethnic",
    "percussive",
    "sound_effects",
)
# MIDI pitch ranges each family is commonly played in; outside them several FluidR3 presets
# fall silent or alias (e.g. basses above C4, piccolo below C4).
FAMILY_PITCHES = {
    "piano": (36, 96),
    "chromatic_percussion": (60, 96),
    "organ": (36, 84),
    "guitar": (40, 84),
    "bass": (28, 55),
    "strings": (40, 84),
    "ensemble": (40, 84),
    "brass": (40, 80),
    "reed": (45, 84),
    "pipe": (60, 96),
    "synth_lead": (48, 84),
    "synth_pad": (40, 80),
    "synth_effects": (40, 84),
    "ethnic": (48, 84),
    "percussive": (48, 84),
    "sound_effects": (48, 72),
}
# Programs whose FluidR3 samples stop short of their family's range (found by rendering every
# pitch: above these they are silent).
PROGRAM_PITCHES = {
    11: (60, 78),
    43: (28, 57),
    58: (28, 72),
    67: (36, 72),
    82: (48, 73),
    101: (40, 79),
}
# TimGM6mb's samples that stop short of FluidR3's ranges (found the same way).
TIMGM_PROGRAM_PITCHES = {78: (60, 78)}
# Every rendered clip is scaled to a random peak level, so that loudness tells no class (espeak-ng
# speaks near full scale, a soundfont note at -20 dBFS).
PEAK_DB = (-30.0, -6.0)
# GS drum-kit programs (bank 128) present in both soundfonts: Standard, Room, Power, Electronic,
# TR-808, Jazz, Brush, Orchestra.
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40, 48)
DRUM_CHANNEL = 9  # GM percussion channel: fluidsynth plays it from bank 128
# GM percussion key map grouped as the downstream classes; (P(role plays in a slot), P(hit per
# 16th note | it plays)) shape a groove: kick and hi-hat often, toms and cymbals sometimes.
DRUM_ROLES = {
    "kick": ((35, 36), 0.8, 0.35),
    "snare": ((37, 38, 39, 40), 0.7, 0.25),
    "hihat": ((42, 44, 46), 0.7, 0.6),
    "tom": ((41, 43, 45, 47, 48, 50), 0.3, 0.2),
    "cymbal": ((49, 51, 52, 53, 55, 57, 59), 0.35, 0.1),
    "percussion": (tuple(range(60, 82)) + (54, 56, 58), 0.4, 0.3),
}

SOUNDFONTS = {
    "FluidR3_GM": "fluid-soundfont-gm",
    "TimGM6mb": "timgm6mb-soundfont",
}


def soundfont(name: str) -> pathlib.Path:
  """The installed .sf2 file of `name` ("FluidR3_GM" or "TimGM6mb")."""
  if name not in SOUNDFONTS:
    raise ValueError(f"Unknown soundfont {name!r}; known: {sorted(SOUNDFONTS)}.")
  package = SOUNDFONTS[name]
  return sea_audio.package_paths(
      package, f"/{name}.sf2", f"/usr/share/sounds/sf2/{name}.sf2", f"the {name} soundfont"
  )[0]


@dataclasses.dataclass(frozen=True)
class Slot:
  """One second of MIDI: a program on a channel and its hits (onset ms, key, velocity, ms)."""

  channel: int
  program: int
  hits: tuple[tuple[int, int, int, int], ...]


def note_slot(program_number: int, pitch: int, velocity: int, duration_ms: int) -> Slot:
  """A single melodic note from the slot's start (channel 0, bank 0)."""
  return Slot(0, int(program_number), ((0, int(pitch), int(velocity), int(duration_ms)),))


def pitch_range(program_number: int, soundfont_name: str = "FluidR3_GM") -> tuple[int, int]:
  """The MIDI pitches at which `program_number` sounds in `soundfont_name` (inclusive)."""
  family = GM_FAMILIES[program_number // 8]
  if soundfont_name == "TimGM6mb" and program_number in TIMGM_PROGRAM_PITCHES:
    return TIMGM_PROGRAM_PITCHES[program_number]
  return PROGRAM_PITCHES.get(program_number, FAMILY_PITCHES[family])


def peak_normalise(clip: np.ndarray, peak_db: float, what: str) -> np.ndarray:
  """`clip` scaled to a peak of `peak_db` dBFS; a silent clip is a plan error (a note outside
  its sample's range), named by `what`."""
  peak = np.abs(clip).max(initial=0.0)
  if peak < 1e-4:
    raise RuntimeError(f"silent rendered clip: {what}.")
  return (clip * (10.0 ** (peak_db / 20.0) / peak)).astype(np.float32)


def random_groove(rng: np.random.Generator, kit: int, slot_ms: int = SLOT_MS) -> Slot:
  """`slot_ms` of a random drum pattern on a 16th-note grid at 70-180 BPM (kit `kit`)."""
  step = 60000.0 / rng.uniform(70.0, 180.0) / 4.0
  start = rng.uniform(0.0, step)
  hits = []
  for keys, p_plays, p_hit in DRUM_ROLES.values():
    if rng.random() >= p_plays:
      continue
    # A drummer uses one or two sounds of a role in a bar, not the whole key map.
    chosen = rng.choice(keys, size=int(rng.integers(1, 3)))
    for onset in np.arange(start, slot_ms - 50, step):
      if rng.random() < p_hit:
        hits.append((int(onset), int(rng.choice(chosen)), int(rng.integers(30, 128)), 100))
  if not hits:  # every pool clip holds at least one drum hit
    hits.append((int(start), 36, int(rng.integers(30, 128)), 100))
  return Slot(DRUM_CHANNEL, int(kit), tuple(sorted(hits)))


def _varlen(value: int) -> bytes:
  """MIDI variable-length quantity: 7 bits per byte, high bit set on all but the last."""
  groups = [value & 0x7F]
  value >>= 7
  while value:
    groups.append((value & 0x7F) | 0x80)
    value >>= 7
  return bytes(reversed(groups))


def midi_file(slots: list[Slot], slot_ms: int = SLOT_MS) -> bytes:
  """A format-0 Standard MIDI File playing `slots` back to back, one per `slot_ms`.

  1000 ticks per quarter at 1 000 000 µs per quarter makes a tick one millisecond. Each slot
  starts with its program change and ends 1 ms early with All Sound Off (CC 120), which fluidsynth
  applies at once, so nothing sounds into the next slot.
  """
  events = []  # (tick, order, bytes); `order` puts silencing before new sound at one tick
  for k, slot in enumerate(slots):
    base, ch = k * slot_ms, slot.channel
    events.append((base, 1, bytes([0xC0 | ch, slot.program & 0x7F])))
    for onset, key, velocity, duration in slot.hits:
      if not 0 <= onset < slot_ms - 2:
        raise ValueError(f"midi_file: a hit at {onset} ms lies outside a {slot_ms} ms slot.")
      off = min(onset + max(duration, 1), slot_ms - 2)
      events.append((base + onset, 3, bytes([0x90 | ch, key & 0x7F, max(1, velocity) & 0x7F])))
      events.append((base + off, 2, bytes([0x80 | ch, key & 0x7F, 0])))
    events.append((base + slot_ms - 1, 0, bytes([0xB0 | ch, 120, 0])))
  events.sort(key=lambda e: (e[0], e[1]))
  track, last = bytearray(_varlen(0) + b"\xff\x51\x03" + (1_000_000).to_bytes(3, "big")), 0
  for tick, _, message in events:
    track += _varlen(tick - last) + message
    last = tick
  track += _varlen(0) + b"\xff\x2f\x00"
  header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 1000)
  return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def render(
    slots: list[Slot],
    soundfont_name: str,
    *,
    sample_rate: int = SAMPLE_RATE,
    slot_ms: int = SLOT_MS,
) -> np.ndarray:
  """Renders `slots` with fluidsynth from soundfont `soundfont_name` → float32
  [len(slots), slot_ms · rate / 1000]. Mono is the mean of fluidsynth's stereo output (drum kits
  are panned)."""
  if slot_ms * sample_rate % 1000:
    raise ValueError(f"render: {slot_ms} ms is not a whole number of samples at {sample_rate} Hz.")
  length = slot_ms * sample_rate // 1000
  binary = sea_audio.program("fluidsynth", "fluidsynth")
  sf2 = soundfont(soundfont_name)
  clips = []
  with tempfile.TemporaryDirectory(prefix="kd_sea_render_") as work:
    for first in range(0, len(slots), SLOTS_PER_RENDER):
      chunk = slots[first : first + SLOTS_PER_RENDER]
      mid, raw = os.path.join(work, "slots.mid"), os.path.join(work, "slots.raw")
      with open(mid, "wb") as f:
        f.write(midi_file(chunk, slot_ms))
      command = [binary, "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", str(FLUIDSYNTH_GAIN)]
      command += ["-r", str(sample_rate), "-T", "raw", "-O", "float", "-E", "little"]
      command += ["-F", raw, str(sf2), mid]
      done = subprocess.run(command, capture_output=True, text=True, check=False)
      if done.returncode != 0 or not os.path.exists(raw):
        raise RuntimeError(
            f"fluidsynth failed ({done.returncode}) on {sf2}: {done.stderr.strip()[-500:]}"
        )
      stereo = np.fromfile(raw, dtype="<f4")
      mono = stereo[: len(stereo) // 2 * 2].reshape(-1, 2).mean(axis=1)
      need = len(chunk) * length
      mono = np.pad(mono[:need], (0, max(0, need - len(mono))))
      clips.append(mono.reshape(len(chunk), length).astype(np.float32))
  if not clips:
    return np.zeros((0, length), np.float32)
  return np.concatenate(clips)


def speak(
    text: str, voice: str, *, speed: int = 160, pitch: int = 50, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
  """SYNTHETIC speech: `text` spoken by espeak-ng `voice` (e.g. "fr-fr+f2"), float32 [T]."""
  binary = sea_audio.program("espeak-ng", "espeak-ng")
  with tempfile.TemporaryDirectory(prefix="kd_sea_speak_") as work:
    path = os.path.join(work, "speech.wav")
    command = [binary, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-w", path, text]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not os.path.exists(path):
      raise RuntimeError(f"espeak-ng failed ({done.returncode}) for voice {voice!r}: {done.stderr}")
    clip, _ = audio_lib.decode_audio(path, sample_rate=sample_rate)
  return clip


NUM_FOLDS = sea_audio.NUM_FOLDS


def program_fold(program_number: int) -> int:
  """Fold 1..5 of a melodic program: its index within its family, mod 5, plus 1."""
  return program_number % 8 % NUM_FOLDS + 1


class SeaGmFamily(sea_audio.SeaBuilder):
  """An other-domain task (SYNTHETIC): GM family of TimGM6mb notes, folds by program."""

  name = "kd_sea_gm_family"
  BUILDER_CONFIGS = sea_audio.SeaBuilder.configs(6, 1)
  DESCRIPTION = "SEA cpu other-domain task: TimGM6mb notes, 16 GM families, folds by program."

  def check_packages(self):
    soundfont("TimGM6mb")
    sea_audio.program("fluidsynth", "fluidsynth")

  def _features(self):
    return {
        **sea_audio.audio_features(SAMPLE_RATE),
        "label": tfds.features.ClassLabel(names=GM_FAMILIES),
        "fold": tfds.features.Tensor(shape=(), dtype=np.int32),
        "program": tfds.features.Tensor(shape=(), dtype=np.int32),
        "pitch": tfds.features.Tensor(shape=(), dtype=np.int32),
    }

  def plan(self) -> list[dict]:
    """One note spec per clip, seeded (so fixed): `size` notes of each program."""
    rng, specs = np.random.default_rng(5), []
    for program_number in range(128):
      low, high = pitch_range(program_number, "TimGM6mb")
      for _ in range(self.builder_config.size):
        pitch = int(rng.integers(low, high + 1))
        slot = note_slot(
            program_number, pitch, int(rng.integers(40, 128)), int(rng.integers(250, 900))
        )
        specs.append(
            dict(
                key=f"{len(specs):06d}",
                program=program_number,
                pitch=pitch,
                slot=slot,
                fold=program_fold(program_number),
                peak_db=float(rng.uniform(*PEAK_DB)),
            )
        )
    return specs

  def _split_generators(self, dl_manager):
    del dl_manager
    specs = self.plan()
    return {
        f"fold{k}": self._generate_examples([p for p in specs if p["fold"] == k])
        for k in range(1, NUM_FOLDS + 1)
    }

  def _generate_examples(self, specs):
    clips = render([s["slot"] for s in specs], "TimGM6mb")
    for spec, clip in zip(specs, clips):
      yield spec["key"], {
          "audio": peak_normalise(clip, spec["peak_db"], f"TimGM6mb {spec}"),
          "sample_rate": SAMPLE_RATE,
          "label": spec["program"] // 8,
          "fold": spec["fold"],
          "program": spec["program"],
          "pitch": spec["pitch"],
      }


def gm_family(split, *, data_dir=None, manual_dir=None, config="full"):
  """Other-domain task: SYNTHETIC TimGM6mb notes, 16 GM families; splits fold1..fold5 by program."""
  del manual_dir  # from Debian packages
  return sea_audio.open_source(SeaGmFamily, split, data_dir, config)
