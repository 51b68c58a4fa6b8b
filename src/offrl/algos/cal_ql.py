"""Cal-QL: calibrated conservative Q-learning, CQL whose push-down stops at the behaviour
policy's value.

Paper: Nakamoto, Zhai, Singh, Mark, Ma, Finn, Kumar & Levine, "Cal-QL: Calibrated Offline RL
Pre-Training for Efficient Online Fine-Tuning", NeurIPS 2023. Reference code:
nakamotoo/Cal-QL (JAX, its CQL with `enable_calql`).

CQL (offrl.algos.cql: losses, update order, defaults) with one change in the penalty. Its
push-down pushes the Q-values of the policy's actions down until they reach V^μ(s), the
Monte-Carlo return of the behaviour policy from s (the dataset's discounted return-to-go),
and no further:
    Q̃_i(s, a_π) = max(Q_i(s, a_π), V^μ(s))      for a_π ~ π(·|s) and a′_π ~ π(·|s′)
    C_i(s) = T log Σ exp(x / T)  over  Q_i(s, a_u) − log 0.5^|A|,  Q̃_i(s, a_π) − log π(a_π|s),
                                       Q̃_i(s, a′_π) − log π(a′_π|s′)
The uniform samples are not bounded (the reference bounds the current and next policy
samples only). A Q-function so trained is conservative, yet not below the data's own
returns. That is its "calibration", which the paper finds keeps online fine-tuning from an
initial dip.

V^μ(s_t) = Σ_k γ^k r_{t+k} to the end of the episode, from the transformed rewards the
batches carry (core.mc_returns), γ the run's discount. A timeout ends the sum with no
bootstrap, as in the reference's return-to-go (non-sparse rewards). The bound is held
constant (no gradient).
Update order and defaults: CQL's (its docstring). The reference tunes per domain (AntMaze,
Kitchen, Adroit: reward scale and bias, 256 × 4 critics, the Lagrange variant on Adroit),
and none of those is set here. Its D4RL locomotion settings are CQL's.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from offrl.algos import cql
from offrl.core import Batch, Metrics, mc_returns
from offrl.data.dataset import Dataset
from offrl.data.transforms import Transforms

State, init, act = cql.State, cql.init, cql.act


@dataclass(frozen=True)
class Config(cql.Config):
    """CQL's fields and defaults; the bound needs none of its own."""


def extra_columns(cfg: Config, dataset: Dataset, tf: Transforms) -> dict[str, np.ndarray]:
    """V^μ per transition: the discounted Monte-Carlo return-to-go."""
    return {"mc_return": mc_returns(dataset, tf, cfg.discount)}


def update(cfg: Config, state: State, batch: Batch, key: jax.Array) -> tuple[State, Metrics]:
    return cql.update(cfg, state, batch, key, lower_bound=batch.extra["mc_return"])
