"""Reference returns for normalized scores: 100 · (R − R_random) / (R_expert − R_random).

A dataset carries its own references when it has them: offrl's recipes store the random and
expert returns measured over 100 episodes (offrl/data/recipes/policies/manifest.json). The
table here is the fallback for data without them, e.g. D4RL-layout files a user brings:
D4RL's published reference returns (random, expert) for MuJoCo locomotion. D4RL's v2
datasets were collected in gym MuJoCo v3 environments, not gymnasium's v5: those numbers
are the field's convention for comparing with papers, not a measurement in v5. For the
small tasks D4RL does not cover, the references measured for offrl's recipes are used.
"""

from __future__ import annotations

from offrl.errors import OffrlError

D4RL_REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    "HalfCheetah": (-280.178953, 12135.0),
    "Hopper": (-20.272305, 3234.3),
    "Walker2d": (1.629008, 4592.3),
}


def reference_scores(env_id: str) -> tuple[float, float]:
    """(random, expert) returns for an environment id such as 'Hopper-v5'."""
    from offrl.data import recipes

    base = env_id.split("/")[-1].split("-")[0]
    if base in D4RL_REFERENCE_RETURNS:
        return D4RL_REFERENCE_RETURNS[base]
    measured = {e.env_id: slug for slug, e in recipes.ENVS.items() if slug in recipes.manifest()}
    if env_id in measured:
        return recipes.reference_returns(measured[env_id])
    known = list(D4RL_REFERENCE_RETURNS) + list(measured)
    raise OffrlError(
        f"no reference returns for environment {env_id!r}; known: {', '.join(known)} "
        "(or store ref_min_score/ref_max_score in the dataset)"
    )


def normalized_score(ret: float, ref_min: float, ref_max: float) -> float:
    return 100.0 * (ret - ref_min) / (ref_max - ref_min)
