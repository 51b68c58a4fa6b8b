"""DDPG: deep deterministic policy gradient (used offline it is a naive baseline).

Paper: Lillicrap, Hunt, Pritzel, Heess, Erez, Tassa, Silver & Wierstra, "Continuous control
with deep reinforcement learning", ICLR 2016; as re-implemented in the TD3 paper ("Our DDPG",
Fujimoto et al. 2018), which the BCQ paper's behavioural agents build on.

    y   = r + γ (1 - d) Q'(s', π'(s'))          L_Q = E[(Q(s, a) - y)²]
    L_π = -E[Q(s, π(s))]                          targets: Polyak averaging with τ every step
Exploration: a = clip(π(s) + N(0, expl_noise²), -1, 1); the BCQ paper's behavioural DDPG
uses expl_noise 0.5 (final buffer) or 0.1 (concurrent).

The update is TD3's (offrl.algos.td3) with one critic, an actor step every critic step and
no target smoothing: only the defaults differ, so this file holds just its Config.
Defaults: "Our DDPG" of the TD3 paper: Adam 3e-4, τ = 0.005, batch 256; 256-256 MLPs
(its 400-300 is `hidden=(400, 300)`).
Deviations: no batch norm and no Ornstein-Uhlenbeck noise (as in "Our DDPG").
"""

from __future__ import annotations

from dataclasses import dataclass

from offrl.algos.td3 import State, act, init, update

__all__ = ["Config", "State", "act", "init", "update"]


@dataclass(frozen=True)
class Config:
    discount: float = 0.99  # γ
    tau: float = 0.005  # Polyak rate of the target networks
    num_critics: int = 1  # one critic: no clipped double-Q
    policy_noise: float = 0.0  # no target policy smoothing
    noise_clip: float = 0.0
    policy_freq: int = 1  # actor and targets step with every critic step
    expl_noise: float = 0.1  # std of the Gaussian exploration noise when acting online
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)
    batch_size: int = 256
    normalize_obs: bool = False
    reward_scaling: str = "none"
