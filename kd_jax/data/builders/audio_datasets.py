"""The manual-download audio builders, gathered for `kd_jax.data.sources`."""

from kd_jax.data.builders.esc50 import Esc50
from kd_jax.data.builders.sonyc_ust import SonycUst
from kd_jax.data.builders.urbansound8k import UrbanSound8k
