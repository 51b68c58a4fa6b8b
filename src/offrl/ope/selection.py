"""How well estimates choose among policies: the metrics of the deep OPE benchmark
(Fu et al., "Benchmarks for Deep Off-Policy Evaluation", ICLR 2021, section 4).

For N policies with true values V_i and estimates V̂_i:
- Spearman's rank correlation between V̂ and V (ties share their mean rank);
- normalized regret@k = (max_i V_i − max_{j ∈ top-k by V̂} V_j) / (max_i V_i − min_i V_i):
  how much value is lost by deploying the best of the k policies the estimates rank highest;
- absolute error on min-max normalized values: mean_i |V̂_i − V_i| / (max V − min V).

Regret and absolute error are 0 when every true value is equal; the rank correlation is
then undefined (None), as it is for fewer than two policies or constant estimates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from offrl.errors import ConfigError


def spearman(estimates: Sequence[float], true_values: Sequence[float]) -> float | None:
    est, true = _pair(estimates, true_values)
    if len(est) < 2 or np.ptp(est) == 0 or np.ptp(true) == 0:
        return None
    return float(stats.spearmanr(est, true).statistic)


def regret_at_k(estimates: Sequence[float], true_values: Sequence[float], k: int) -> float:
    """Normalized regret of deploying the best true policy among the top-k estimates; ties in
    the estimates are broken by order (the first listed is ranked higher)."""
    if k < 1:
        raise ConfigError(f"regret@k needs k >= 1, got {k}")
    est, true = _pair(estimates, true_values)
    span = np.ptp(true)
    if span == 0:
        return 0.0
    top = np.argsort(-est, kind="stable")[:k]
    return float((true.max() - true[top].max()) / span)


def normalized_abs_error(estimates: Sequence[float], true_values: Sequence[float]) -> float:
    est, true = _pair(estimates, true_values)
    span = np.ptp(true)
    return 0.0 if span == 0 else float(np.mean(np.abs(est - true)) / span)


def selection_metrics(
    estimates: Sequence[float], true_values: Sequence[float], ks: Sequence[int] = (1, 5)
) -> dict[str, float | None]:
    """{"spearman", "regret@1", "regret@5", "abs_error", "policies"}; regret@k for k >= N is
    0 by definition and is still reported."""
    out: dict[str, float | None] = {"spearman": spearman(estimates, true_values)}
    out |= {f"regret@{k}": regret_at_k(estimates, true_values, k) for k in ks}
    out["abs_error"] = normalized_abs_error(estimates, true_values)
    out["policies"] = len(estimates)
    return out


def _pair(estimates, true_values) -> tuple[np.ndarray, np.ndarray]:
    est, true = np.asarray(estimates, float), np.asarray(true_values, float)
    if est.shape != true.shape or est.ndim != 1:
        raise ConfigError(
            f"estimates {est.shape} and true values {true.shape} must be equal-length vectors"
        )
    if est.size == 0:
        raise ConfigError("no policies to compare")
    if not (np.all(np.isfinite(est)) and np.all(np.isfinite(true))):
        raise ConfigError("estimates and true values must be finite")
    return est, true
