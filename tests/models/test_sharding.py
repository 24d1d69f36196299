"""Every model family under jit on 8 simulated CPU devices gives the single-device result.

The 8 devices exist only in a subprocess (XLA_FLAGS must be set before jax starts), so the rest of
the suite keeps its one device. The batch is sharded over a 1-D "data" mesh, variables are
replicated; BatchNorm's batch statistics in train mode must then be the global ones. Meshes:
the trainer's (`kd_jax.train.mesh`, automatic axes) and `jax.make_mesh`'s explicit-axes default.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

from tests import compile_flags

REPO = pathlib.Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from kd_jax.models import get_model
    from kd_jax.models.bert import BertConfig

    from jax.sharding import AxisType, Mesh
    assert jax.device_count() == 8, jax.devices()
    # The trainer's mesh (kd_jax.train.mesh: automatic sharding) and jax.make_mesh's default
    # (explicit sharding, where shape-changing ops must agree on shardings).
    meshes = {"auto": Mesh(np.asarray(jax.devices()), ("data",)),
              "explicit": jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))}
    rng = np.random.default_rng(0)
    small_bert = BertConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4,
                            intermediate_size=64, max_position_embeddings=16)
    cases = {
        "resnet8": (get_model("resnet8", num_classes=10), rng.normal(size=(16, 28, 28, 1))),
        "vit_micro": (get_model("vit_micro", num_classes=10), rng.normal(size=(16, 16, 16, 3))),
        "bert": (get_model("bert", config=small_bert, num_classes=3),
                 rng.integers(1, 100, size=(16, 12))),
        "sea_student3": (get_model("sea_student3"), rng.normal(size=(16, 8000)) * 0.1),
    }
    report = {}
    for name, (model, x) in cases.items():
        x = jnp.asarray(x, jnp.int32 if name == "bert" else jnp.float32)
        # Random values in the initialised shapes: compiling `init` (threefry for every tensor)
        # would cost more than the whole check.
        shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x[:1])
        variables = jax.tree_util.tree_map(
            lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape) * rng.choice([-0.1, 0.1], s.shape),
                                  s.dtype), shapes)
        def forward(v, x):
            # train=True: BatchNorm must use the statistics of the global (sharded) batch.
            out, updates = model.apply(v, x, train=True, mutable=["batch_stats"],
                                       rngs={"dropout": jax.random.PRNGKey(1)})
            return out["embedding"], out["logits"], updates
        one = jax.jit(forward)(variables, x)
        # Explicit meshes only trip ops whose output sharding is ambiguous (the embedding gather,
        # the class-token concatenation): check the transformers there, save the compile time.
        for mesh_name, mesh in meshes.items() if name in ("bert", "vit_micro") else [
                ("auto", meshes["auto"])]:
            data, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
            many = jax.jit(forward)(jax.device_put(variables, replicated), jax.device_put(x, data))
            assert len(many[0].sharding.device_set) == 8
            gap = lambda a, b: float(np.abs(np.float32(a) - np.float32(b)).max())
            errors = jax.tree_util.tree_map(gap, one, many)
            report[f"{name}/{mesh_name}"] = max(jax.tree_util.tree_leaves(errors), default=0.0)
    print("RESULT " + json.dumps(report))
""")


def test_models_on_eight_simulated_devices():
  env = dict(
      os.environ,
      XLA_FLAGS=compile_flags.xla_flags(8),
      JAX_PLATFORMS="cpu",
      PYTHONPATH=str(REPO),
  )
  result = subprocess.run(
      [sys.executable, "-c", SCRIPT],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert result.returncode == 0, result.stderr[-4000:]
  line = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")][-1]
  errors = json.loads(line[len("RESULT ") :])
  assert set(errors) == {
      "resnet8/auto",
      "sea_student3/auto",
      "vit_micro/auto",
      "bert/auto",
      "vit_micro/explicit",
      "bert/explicit",
  }
  for name, error in errors.items():
    assert error < 1e-4, (name, error)
