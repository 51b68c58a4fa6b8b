"""MinAtar games (Young & Tian, 2019) as gymnasium environments with flat observations.

MinAtar's games are 10×10 grids with one binary channel per object kind (Breakout: paddle,
ball, trail, brick; Space Invaders: cannon, aliens moving left/right, friendly and enemy
bullets). offrl's networks are MLPs, so an observation is the grid flattened to a float32
vector of 100·C zeros and ones (Breakout 400, Space Invaders 600), in row-major (y, x, c)
order: `obs.reshape(10, 10, C)` gives MinAtar's `state()` back.

Registered ids (needs the `minatar` package: `pip install offrl[minatar]`):
    offrl/MinAtarBreakout-v0        3 actions: no-op, left, right
    offrl/MinAtarSpaceInvaders-v0   4 actions: no-op, left, right, fire

Sticky actions as in MinAtar: with probability `sticky_action_prob` (0.1, MinAtar's default)
the game repeats the previous action instead of the chosen one; the agent (and a dataset) sees
the action it chose. Difficulty ramping is on (MinAtar's default).

Where offrl differs from MinAtar's own gymnasium registration (`minatar.gym`, ids
MinAtar/Breakout-v1 etc.):
- flat float32 observations instead of (10, 10, C) booleans;
- the minimal action set (MinAtar's v1 ids do the same; its v0 ids have all 6 actions);
- `reset(seed=s)` reseeds the game's and the sticky action's random state and clears the
  previous action, so an episode is a function of its seed and the actions alone (MinAtar
  keeps the previous episode's last action, which a reset with a seed would then repeat);
- a 10,000-step time limit (truncation), as the gym-minatar package registers: MinAtar has
  none, and an agent that never loses Breakout would otherwise never end an episode.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import register, registry

from offrl.errors import OffrlError

STICKY_ACTION_PROB = 0.1  # MinAtar's default
MAX_EPISODE_STEPS = 10_000
GAMES = {"MinAtarBreakout": "breakout", "MinAtarSpaceInvaders": "space_invaders"}


def _environment_class():
    try:
        from minatar import Environment
    except ImportError:
        raise OffrlError(
            "MinAtar environments need the minatar package: pip install 'offrl[minatar]'"
        ) from None
    return Environment


class MinAtarEnv(gym.Env):
    """One MinAtar game; observations (100·C,) float32 in {0, 1}, Discrete(minimal set)."""

    metadata = {"render_modes": []}

    def __init__(self, game: str, sticky_action_prob: float = STICKY_ACTION_PROB):
        if not 0.0 <= sticky_action_prob <= 1.0:
            raise OffrlError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob}")
        self.game = _environment_class()(game, sticky_action_prob=sticky_action_prob)
        self.action_set = list(self.game.minimal_action_set())
        self.action_space = gym.spaces.Discrete(len(self.action_set))
        size = int(np.prod(self.game.state_shape()))
        self.observation_space = gym.spaces.Box(0.0, 1.0, (size,), np.float32)

    def _obs(self) -> np.ndarray:
        return self.game.state().reshape(-1).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            # MinAtar draws its game and sticky-action randomness from one RandomState.
            self.game.seed(int(self.np_random.integers(2**31 - 1)))
        self.game.reset()
        self.game.last_action = 0  # the no-op: nothing sticks across episodes
        return self._obs(), {}

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise OffrlError(
                f"{self.spec.id if self.spec else 'MinAtar'}: action {action!r} "
                f"outside Discrete({self.action_space.n})"
            )
        reward, terminal = self.game.act(self.action_set[int(action)])
        return self._obs(), float(reward), bool(terminal), False, {}


def register_envs() -> None:
    """Register the games' ids with gymnasium (idempotent; minatar is imported on make)."""
    for name, game in GAMES.items():
        env_id = f"offrl/{name}-v0"
        if env_id not in registry:
            register(
                id=env_id,
                entry_point="offrl.envs.minatar:MinAtarEnv",
                kwargs={"game": game},
                max_episode_steps=MAX_EPISODE_STEPS,
            )
