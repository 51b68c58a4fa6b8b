"""Networks shared by the algorithms."""

from offrl.nets.discrete import DiscreteQEnsemble, DiscreteQNet
from offrl.nets.mlp import (
    MLP,
    DistributionalQNet,
    QEnsemble,
    QNet,
    ValueNet,
    ensemble_member,
    independent,
)
from offrl.nets.policies import DeterministicPolicy, GaussianPolicy, TanhGaussianPolicy
from offrl.nets.vae import VAE

__all__ = [
    "DiscreteQEnsemble",
    "DiscreteQNet",
    "DistributionalQNet",
    "MLP",
    "QEnsemble",
    "QNet",
    "ensemble_member",
    "independent",
    "ValueNet",
    "DeterministicPolicy",
    "GaussianPolicy",
    "TanhGaussianPolicy",
    "VAE",
]
