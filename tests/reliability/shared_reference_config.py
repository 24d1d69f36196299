"""A config whose `checkpoint_every` and `total_steps` are one FieldReference (what no shipped
config may do): overriding one of them on the command line must be refused in one line.

  python -m experiments.main --config=tests/reliability/shared_reference_config.py \
      --workdir=DIR --config.checkpoint_every=5
"""

from tests.train import helpers


def get_config():
  c = helpers.tiny_config(total_steps=8)
  c.checkpoint_every = c.get_ref("total_steps")
  return c
