"""Off-policy evaluation: the value of a policy from logged episodes, with no simulator.

    results = offrl.ope.estimate(act_fn, dataset, ("fqe", "pdis", "dr"), discount=0.99)
    results["dr"]  # {"value": v, "ci": [lo, hi], "std_error": ..., "ess": ..., ...}

Estimators (docs/ope.md has the equations): FQE (fqe.py), IS / PDIS / WIS / WPDIS
(importance.py), doubly robust with FQE's critic as the model (dr.py), model-based: rollouts
in offrl.dynamics' ensemble (model_based.py); bootstrap intervals over episodes
(bootstrap.py); the target policy's density and the behaviour model (behavior.py); how well
estimates choose among policies: Spearman, regret@k, absolute error (selection.py).

Layering: ope imports data/, nets/, core.py, dynamics.py and errors only; evaluate.py, training.py,
policy.py and cli.py call it.
"""

from offrl.ope.api import estimate, fit_behavior_log_probs, fit_dynamics, format_results
from offrl.ope.config import (
    ESTIMATORS,
    OPEConfig,
    check_estimators,
    config_from_overrides,
    parse_estimators,
)
from offrl.ope.episodes import select_episodes, split_episodes
from offrl.ope.selection import selection_metrics

__all__ = [
    "ESTIMATORS",
    "OPEConfig",
    "check_estimators",
    "config_from_overrides",
    "estimate",
    "fit_behavior_log_probs",
    "fit_dynamics",
    "format_results",
    "parse_estimators",
    "select_episodes",
    "selection_metrics",
    "split_episodes",
]
