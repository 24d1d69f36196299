"""TFDS builders for the datasets kd_jax reads (array_record, no TensorFlow needed).

Each builder lives in its own module; `kd_jax.data.sources.get_source` maps public names to them.
"""
