"""Reference returns for normalized scores: 100 · (R − R_random) / (R_expert − R_random).

A dataset carries its own references when it has them: offrl's recipes store the random and
expert returns measured over 100 episodes (offrl/recipes/policies/manifest.json). The
table here is the fallback for data without them, e.g. D4RL-layout files a user brings:
D4RL's published reference returns (random, expert) for MuJoCo locomotion. D4RL's v2
datasets were collected in gym MuJoCo v3 environments, not gymnasium's v5: those numbers
are the field's convention for comparing with papers, not a measurement in v5. For the
small tasks D4RL does not cover, the references measured for offrl's recipes are used.

Discrete-action tasks (DISCRETE_REFERENCE_RETURNS, by exact gymnasium id). Random: the
uniform random policy's mean return over 100 episodes (`rollout(env_id, uniform, 100,
seed=10000)`, gymnasium 1.4.0), measured for offrl. Expert:
- CartPole-v1: 500, the most an episode can earn (500 steps of reward 1).
- Acrobot-v1: -72.1, the RL Zoo's published DQN agent (huggingface.co/sb3/dqn-Acrobot-v1,
  -72.10 ± 6.44); Acrobot-v1's own "solved" threshold is -100. The random policy never swings
  up within the 500-step limit, so random is exactly -500.
- LunarLander-v3: 200, the environment's "solved" threshold, a convention rather than a
  measured expert (good agents score 200-300).
"""

from __future__ import annotations

from offrl.errors import OffrlError

D4RL_REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    "HalfCheetah": (-280.178953, 12135.0),
    "Hopper": (-20.272305, 3234.3),
    "Walker2d": (1.629008, 4592.3),
    "Ant": (-325.6, 3879.7),
}


# (random, expert); see the module docstring for where each number comes from.
DISCRETE_REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    "CartPole-v1": (22.98, 500.0),  # random: 22.98 ± 12.39
    "Acrobot-v1": (-500.0, -72.1),  # random: -500.0 ± 0.0
    "LunarLander-v3": (-182.55, 200.0),  # random: -182.55 ± 113.81
}


def reference_scores(env_id: str) -> tuple[float, float]:
    """Published (random, expert) returns for an environment id such as 'Hopper-v5'.
    offrl.recipes.env_reference_scores adds the ones measured for offrl's own recipes."""
    if env_id in DISCRETE_REFERENCE_RETURNS:
        return DISCRETE_REFERENCE_RETURNS[env_id]
    base = env_id.split("/")[-1].split("-")[0]
    if base in D4RL_REFERENCE_RETURNS:
        return D4RL_REFERENCE_RETURNS[base]
    raise OffrlError(
        f"no reference returns for environment {env_id!r}; known: {', '.join(known_envs())} "
        "(or store ref_min_score/ref_max_score in the dataset)"
    )


def known_envs() -> list[str]:
    return list(D4RL_REFERENCE_RETURNS) + list(DISCRETE_REFERENCE_RETURNS)


def normalized_score(ret: float, ref_min: float, ref_max: float) -> float:
    return 100.0 * (ret - ref_min) / (ref_max - ref_min)
