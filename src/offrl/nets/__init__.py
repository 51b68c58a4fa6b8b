"""Networks shared by the algorithms."""

from offrl.nets.discrete import DiscreteQNet
from offrl.nets.mlp import MLP, QEnsemble, QNet, ValueNet, ensemble_member
from offrl.nets.policies import DeterministicPolicy, GaussianPolicy, TanhGaussianPolicy
from offrl.nets.vae import VAE

__all__ = [
    "DiscreteQNet",
    "MLP",
    "QEnsemble",
    "QNet",
    "ensemble_member",
    "ValueNet",
    "DeterministicPolicy",
    "GaussianPolicy",
    "TanhGaussianPolicy",
    "VAE",
]
