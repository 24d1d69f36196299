"""The generic training engine: train state, mesh sharding, jit steps, loop, orbax checkpoints.

Entry points: `loop.train_and_evaluate(config, workdir)` for one run and
`stages.run(config, workdir)` for a single or staged config; `experiments/main.py` is the
command line.
Methods plug in through `kd_jax.methods.base.Method`.
"""

from kd_jax.train.config import default_config
from kd_jax.train.config_validation import validate
from kd_jax.train.loop import final_params, train_and_evaluate
from kd_jax.train.state import TrainState, create_train_state

__all__ = [
    "TrainState",
    "create_train_state",
    "default_config",
    "final_params",
    "train_and_evaluate",
    "validate",
]
