"""Networks shared by the algorithms."""

from offrl.nets.mlp import MLP, QEnsemble, ValueNet
from offrl.nets.policies import DeterministicPolicy, GaussianPolicy, TanhGaussianPolicy

__all__ = [
    "MLP",
    "QEnsemble",
    "ValueNet",
    "DeterministicPolicy",
    "GaussianPolicy",
    "TanhGaussianPolicy",
]
