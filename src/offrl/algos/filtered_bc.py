"""Filtered behaviour cloning (%BC): BC on the best x% of the episodes.

Paper: Chen et al., "Decision Transformer", NeurIPS 2021 (the "%BC" baseline); the
"10%BC" column of CORL (Tarasov et al., NeurIPS 2023 datasets track) is this method at
x = 10%. The imitation lecture's point: on mixed data, imitating only the good part can
"actually work really well".

Selection, once before training (`select_rows`), on whole episodes:
    G_e = Σ_t γ^t r_t over episode e            (γ = `discount`; CORL's default 1: the return)
    keep the max(1, ⌊x · E⌋) episodes of highest G_e        (x = `fraction`, E episodes)
Loss, on the kept pairs (s, a), exactly BC's (offrl.algos.bc):
    deterministic:  L(θ) = E[ ||π_θ(s) - a||² ] / |A|
    gaussian:       L(θ) = -E[ log N(a; μ_θ(s), σ_θ²) ]
Update order: one policy step per update. Acting: BC's (the deterministic output).

Episodes are those of the data's terminals and timeouts (CORL cuts D4RL's data at
terminals and every 1000 steps, which for D4RL's locomotion data is the same). Ties in G_e
keep the earlier episode. Observations are standardized with the kept rows' mean/std, as
CORL computes them after filtering.

Defaults: fraction 0.1 and γ = 1 (CORL's any_percent_bc.py), every BC field as offrl's BC
(256-256 MLP, Adam 1e-3, batch 256).
Deviations: CORL keeps ⌊x · E⌋ episodes (none when x · E < 1); here at least one.
CORL's actor learns at 3e-4; here BC's 1e-3, so that %BC differs from BC by its data only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offrl.algos import bc
from offrl.algos.bc import State, act, init, update
from offrl.data.dataset import Dataset

__all__ = ["Config", "State", "act", "best_episodes", "init", "select_rows", "update"]


@dataclass(frozen=True)
class Config:
    fraction: float = 0.1  # x: the share of episodes kept, by return (CORL's frac)
    discount: float = 1.0  # γ of the returns episodes are ranked by (CORL: 1.0)
    variant: str = "deterministic"  # BC's loss: "deterministic" (MSE) or "gaussian"
    hidden: tuple[int, ...] = (256, 256)  # policy MLP widths
    lr: float = 1e-3  # Adam learning rate (BC's)
    batch_size: int = 256
    normalize_obs: bool = True  # standardize observations with the kept rows' statistics
    reward_scaling: str = "none"  # rewards are unused by BC


def best_episodes(dataset: Dataset, fraction: float, discount: float) -> tuple[np.ndarray, dict]:
    """The rows of the max(1, ⌊fraction · E⌋) episodes of highest discounted return, in the
    data's order, and what was kept."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not 0.0 <= discount <= 1.0:
        raise ValueError(f"discount must be in [0, 1], got {discount}")
    starts, ends = dataset.episode_starts, dataset.episode_ends
    returns = dataset.returns_to_go(discount)[starts]  # G_e: the first row's return-to-go
    count = max(1, int(fraction * starts.size))
    kept = np.sort(np.argsort(-returns, kind="stable")[:count])
    rows = np.concatenate([np.arange(starts[e], ends[e] + 1) for e in kept])
    info = {
        "episodes": int(count),
        "of_episodes": int(starts.size),
        "return_threshold": float(returns[kept].min()),
        "kept_return_mean": float(returns[kept].mean()),
        "return_mean": float(returns.mean()),
    }
    return rows, info


def select_rows(cfg: Config, dataset: Dataset) -> tuple[np.ndarray, dict]:
    return best_episodes(dataset, cfg.fraction, cfg.discount)


# BC's losses, named here so that this module reads as the whole method.
mse_loss, nll_loss = bc.mse_loss, bc.nll_loss
