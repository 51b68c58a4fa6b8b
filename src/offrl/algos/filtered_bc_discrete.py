"""Filtered behaviour cloning (%BC) for discrete actions: discrete BC on the best x% of the
episodes.

Paper: the "%BC" baseline of Chen et al., "Decision Transformer", NeurIPS 2021 (their Atari
experiments filter discrete-action data the same way).

Selection, once before training, exactly filtered_bc's (`filtered_bc.best_episodes`):
    keep the max(1, ⌊x · E⌋) episodes of highest Σ_t γ^t r_t
Loss, on the kept pairs, discrete BC's (offrl.algos.bc_discrete):
    L(θ) = -E[ log softmax(f_θ(s))_a ]
Update order: one Adam step per update. Acting: argmax_a f_θ(s)_a (a sample when not
deterministic).

Defaults: fraction 0.1 and γ = 1 as filtered_bc (CORL); every network field as discrete BC.
Deviations: filtered_bc's (at least one episode is kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offrl.algos import bc_discrete
from offrl.algos.bc_discrete import State, act, init, update
from offrl.algos.filtered_bc import best_episodes
from offrl.data.dataset import Dataset

__all__ = ["Config", "State", "act", "init", "select_rows", "update"]

action_kind = "discrete"


@dataclass(frozen=True)
class Config:
    fraction: float = 0.1  # x: the share of episodes kept, by return
    discount: float = 1.0  # γ of the returns episodes are ranked by
    hidden: tuple[int, ...] = (256, 256)  # policy MLP widths
    lr: float = 1e-3  # Adam learning rate (discrete BC's)
    batch_size: int = 256
    normalize_obs: bool = True  # standardize observations with the kept rows' statistics
    reward_scaling: str = "none"  # rewards are unused by BC


def select_rows(cfg: Config, dataset: Dataset) -> tuple[np.ndarray, dict]:
    return best_episodes(dataset, cfg.fraction, cfg.discount)


cross_entropy_loss = bc_discrete.cross_entropy_loss  # the loss, named here
