"""Reference returns for normalized scores: 100 · (R − R_random) / (R_expert − R_random).

Pendulum-v1: measured here over 100 episodes (seeds 10000..10099) with
`python -m offrl.envs.registry` — the uniform random policy and the built-in swing-up
controller with its N(0, 0.1²) noise (the `expert_policy` of offrl.data.builtin).
MuJoCo locomotion: D4RL's published reference returns (random, expert). D4RL's v2 datasets
were collected in gym MuJoCo v3 environments, not gymnasium's v5: the numbers are the
field's convention for comparing with papers, not a measurement in v5.
"""

from __future__ import annotations

from offrl.errors import OffrlError

REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    "Pendulum": (-1176.32, -139.47),  # measured, see the module docstring
    "HalfCheetah": (-280.178953, 12135.0),
    "Hopper": (-20.272305, 3234.3),
    "Walker2d": (1.629008, 4592.3),
}


def reference_scores(env_id: str) -> tuple[float, float]:
    """(random, expert) returns for an environment id such as 'Hopper-v5'."""
    base = env_id.split("/")[-1].split("-")[0]
    if base not in REFERENCE_RETURNS:
        raise OffrlError(
            f"no reference returns for environment {env_id!r}; known: "
            f"{', '.join(REFERENCE_RETURNS)} (or store ref_min_score/ref_max_score in the dataset)"
        )
    return REFERENCE_RETURNS[base]


def normalized_score(ret: float, ref_min: float, ref_max: float) -> float:
    return 100.0 * (ret - ref_min) / (ref_max - ref_min)


if __name__ == "__main__":
    from offrl.data.builtin import ENV_ID, expert_policy, random_policy
    from offrl.envs.rollout import rollout

    for label, policy in (("random", random_policy), ("expert", expert_policy)):
        r = rollout(ENV_ID, policy, 100, seed=10_000).returns
        print(
            f"{ENV_ID} {label}: mean return {r.mean():.2f} ± {r.std():.2f} over {len(r)} episodes"
        )
