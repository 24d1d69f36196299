"""Which teacher heads a trained student's heads stand in for: AMAD's soft alignment a_ij.

`AttentionAlignment` (kind "attention_alignment") averages Eq. 2's a_ij = softmax_j cos(T_i, S_j)
(`kd_jax.losses.head_alignment`) over the first `max_batches` batches of its split, for every
uniformly mapped layer pair (`kd_jax.methods.amad.uniform_layer_map`), so a report can draw the
matrix of a trained pair. Inference only; the results are flat numbers "a_l<pair>_t<i>_s<j>" plus
"layers", "teacher_heads", "student_heads" (`alignment_matrices` rebuilds the array).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.losses.attention import head_alignment
from kd_jax.methods.amad import uniform_layer_map
from kd_jax.train import forward as forward_lib


@dataclasses.dataclass(frozen=True)
class AttentionAlignment:
  max_batches: int = 4

  def __call__(self, run) -> dict[str, float]:
    forward = forward_lib.Forward(
        run.forward.student,
        run.forward.teachers,
        run.forward.compute_dtype,
        student_outputs=("attentions",),
        teacher_outputs=("attentions",),
    )

    @jax.jit
    def align(params, model_state, teacher_variables, x, query_mask):
      s = forward.student_eval(params, model_state, x)["attentions"]
      t = forward.teachers_eval(teacher_variables, x)[0]["attentions"]
      pairs = uniform_layer_map(len(t), len(s))
      return jnp.stack([head_alignment(t[i], s[j], query_mask) for i, j in pairs])

    total, count = 0.0, 0.0
    for index, batch in enumerate(run.all_batches()):
      if index == self.max_batches:
        break
      x = jnp.asarray(batch[run.input_key])
      mask = batch.get("attention_mask")
      mask = None if mask is None else jnp.asarray(mask, jnp.float32)
      a = align(run.state.params["student"], run.state.model_state, run.teacher_variables, x, mask)
      keep = np.asarray(batch["mask"], np.float64)  # padded examples of the last batch
      total = total + np.einsum("lbij,b->lij", np.asarray(a, np.float64), keep)
      count += keep.sum()
    mean = total / count
    out = {"layers": mean.shape[0], "teacher_heads": mean.shape[1], "student_heads": mean.shape[2]}
    for (layer, i, j), value in np.ndenumerate(mean):
      out[f"a_l{layer}_t{i}_s{j}"] = float(value)
    return out


def alignment_matrices(result: dict) -> np.ndarray:
  """[layers, H_t, H_s] from an AttentionAlignment result."""
  shape = (int(result["layers"]), int(result["teacher_heads"]), int(result["student_heads"]))
  out = np.zeros(shape)
  for index in np.ndindex(*shape):
    out[index] = result["a_l{}_t{}_s{}".format(*index)]
  return out
