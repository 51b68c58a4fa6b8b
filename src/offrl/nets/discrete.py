"""Networks for discrete actions: one output per action, optionally per head and per quantile.

`DiscreteQNet(hidden, num_actions)` maps observations (B, obs_dim) to Q-values (B, n);
`DiscreteQEnsemble` stacks `num` independent ones, (num, B, n). Two
optional trailing axes, in this order, serve the multi-head and distributional variants:

    heads=K        (B, n, K)      K Q-estimates per action (Ensemble-DQN, REM)
    quantiles=N    (B, n, N)      N quantiles of the return per action (QR-DQN)
    both           (B, n, K, N)

The action axis is always axis 1, so `core.action_values(q, act)` picks the data actions'
values for every layout. The heads share every layer but the last, as in the REM paper's
multi-head architecture (Agarwal et al. 2020, Fig. 2): the last layer is one Dense with
n·K·N outputs, reshaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from offrl.nets.mlp import MLP, independent


class DiscreteQNet(nn.Module):
    hidden: Sequence[int]
    num_actions: int
    heads: int | None = None  # None: no head axis
    quantiles: int | None = None  # None: no quantile axis
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> jnp.ndarray:
        if self.num_actions < 1:
            raise ValueError(f"num_actions must be >= 1 (discrete actions), got {self.num_actions}")
        trailing = tuple(k for k in (self.heads, self.quantiles) if k is not None)
        if any(k < 1 for k in trailing):
            raise ValueError(f"heads and quantiles must be >= 1 or None, got {trailing}")
        width = self.num_actions * math.prod(trailing)
        out = MLP(self.hidden, width, layer_norm=self.layer_norm)(obs)
        return out.reshape(*obs.shape[:-1], self.num_actions, *trailing)


class DiscreteQEnsemble(nn.Module):
    """`num` independent DiscreteQNets in one vmap: obs (B, d) -> (num, B, n)."""

    hidden: Sequence[int]
    num_actions: int
    num: int = 2

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> jnp.ndarray:
        return independent(DiscreteQNet, self.num)(self.hidden, self.num_actions)(obs)
