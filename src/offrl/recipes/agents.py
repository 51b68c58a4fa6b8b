"""The committed behaviour agents: policies/manifest.json and the snapshot files beside it,
loaded as batch policies. Below the recipes (and their discrete part), which read them."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from offrl.envs.rollout import BatchPolicy, LoggingPolicy
from offrl.errors import ConfigError

POLICY_DIR = Path(__file__).parent / "policies"


@functools.cache
def manifest() -> dict:
    path = POLICY_DIR / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def snapshot_policy(
    agent: dict, file: str, deterministic: bool, seed: int, log_probs: bool = False
) -> BatchPolicy | LoggingPolicy:
    """A committed snapshot as a batch policy (sampling/exploring unless deterministic);
    with `log_probs` an exploring one that returns its actions' log-densities too (NaN for
    DDPG's clipped noise, which has none)."""
    from offrl.behavior.online import load_actor, logging_policy
    from offrl.evaluate import jax_policy

    config = json.dumps(agent["algo_config"], sort_keys=True)
    algo, cfg, state = agent_template(agent["algo"], config, agent["obs_dim"], agent["act_dim"])
    state = load_actor(POLICY_DIR / file, state)
    if log_probs:
        if deterministic:
            raise ConfigError(f"{file}: a deterministic policy has no log-densities")
        return logging_policy(agent["algo"], algo, cfg, state, seed)
    return jax_policy(algo, cfg, state, deterministic, seed)


@functools.cache
def agent_template(
    algo_name: str, config_json: str, obs_dim: int, act_dim: int, num_actions: int = 0
):
    """(algo, cfg, state) whose actor (or Q) a snapshot file overwrites; one per agent config."""
    import jax

    from offrl import algos
    from offrl.algos import make_algo_config
    from offrl.core import template_spec

    algo = algos.get(algo_name)
    cfg = make_algo_config(algo_name, json.loads(config_json))
    spec = template_spec(obs_dim, act_dim, num_actions)
    return algo, cfg, algo.init(cfg, spec, jax.random.key(0))
