"""Shared base for kd_jax's TFDS builders.

TFDS normally reads a dataset's description from metadata files next to the builder's module
(`dataset_info_from_configs`); kd_jax's builders are plain modules inside a library, so they build
their `DatasetInfo` directly. They skip TFDS's global registry (`skip_registration=True`) so that
names like "fashion_mnist" never clash with TFDS's own (TensorFlow-encoded) builders, and they
store every feature as a NumPy-encodable `Tensor`/`Text`/`Scalar`: TFDS's `Image` and `Audio`
features call TensorFlow to encode, and kd_jax installs no TensorFlow.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from etils import epath
import tensorflow_datasets as tfds


class KdBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A GeneratorBasedBuilder whose info comes from class attributes, not metadata files.

  Subclasses set `DESCRIPTION`, `HOMEPAGE`, `CITATION` and implement `_features()` returning a
  mapping name -> tfds feature, plus the usual `_split_generators` / `_generate_examples`.
  """

  def __init_subclass__(cls, **kwargs):
    # TFDS registers every subclass globally by default, and a second registration of a name
    # (module reload, notebook re-run) is an error; kd_jax looks builders up itself.
    kwargs.setdefault("skip_registration", True)
    super().__init_subclass__(**kwargs)

  DESCRIPTION = ""
  HOMEPAGE = ""
  CITATION = ""
  SUPERVISED_KEYS: tuple[str, str] | None = None

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default resolves the package through importlib resources, which for editable
    # installs returns a multiplexed path and then needs the `importlib_resources` backport; the
    # builder's own source file is all TFDS wants (it looks for a checksums file beside it).
    return epath.Path(inspect.getfile(cls))

  def _features(self) -> Mapping[str, Any]:
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict(dict(self._features())),
        supervised_keys=self.SUPERVISED_KEYS,
        homepage=self.HOMEPAGE or None,
        citation=self.CITATION or None,
    )
