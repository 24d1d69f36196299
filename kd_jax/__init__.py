"""kd_jax: knowledge distillation in JAX/Flax.

Subpackages: `losses` (pure, unreduced distillation losses), `metrics` (accuracy and fidelity),
`models`, `data`, `retrieval`, `train`, `methods`. See README.md for the paper -> code map.
"""

__version__ = "0.1.0"
