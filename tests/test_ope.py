"""Off-policy evaluation: IS/PDIS/WIS/WPDIS against hand-computed values; DR's identities;
FQE on finite-horizon chains of known discounted value (continuous and discrete); bootstrap
intervals; the fitted behaviour model; held-out splits; one-line errors; the layering."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import constant_dynamics, random_dataset, random_discrete_dataset

from offrl import dynamics, ope
from offrl.data.dataset import COLUMNS, Dataset
from offrl.errors import ConfigError, DataError
from offrl.ope import behavior, dr, episodes, importance
from offrl.ope.episodes import Trajectories

GAMMA = 0.9
# Small and fast: tiny nets, few steps, few resamples.
FAST = ope.OPEConfig(
    num_bootstrap=200,
    fqe_hidden=(32, 32),
    fqe_steps=1500,
    fqe_lr=1e-3,
    fqe_tau=0.05,
    fqe_batch_size=64,
    behavior_hidden=(32, 32),
    behavior_steps=800,
    behavior_batch_size=128,
    chunk_size=500,
)


log_weights = jax.jit(importance.log_weights, static_argnames="max_weight")
is_components = jax.jit(importance.components, static_argnames="discount")
dr_components = jax.jit(dr.components, static_argnames="discount")
truncated_normal = jax.jit(behavior.truncated_normal_log_prob)


def always(action: int):
    return lambda obs: jnp.full((obs.shape[0],), action, jnp.int32)


def zero_action(obs):
    return jnp.zeros((obs.shape[0], 1))


# --------------------------------------------------------------------------- hand-computed IS


def toy_dataset() -> tuple[Dataset, np.ndarray]:
    """Two discrete episodes: A takes actions 0, 0, 1 with rewards 1, 2, 3 and ends in a
    terminal; B takes 1, 0 with rewards 1, 1 and is cut by a timeout. And the logged
    behaviour probabilities of those actions."""
    actions = np.array([0, 0, 1, 1, 0])[:, None]
    obs = np.arange(5, dtype=np.float32)[:, None]
    ds = Dataset(
        observations=obs,
        actions=actions,
        rewards=np.array([1, 2, 3, 1, 1], np.float32),
        next_observations=obs + 1,
        terminals=np.array([0, 0, 1, 0, 0], bool),
        timeouts=np.array([0, 0, 0, 0, 1], bool),
        num_actions=2,
    )
    return ds, np.array([0.5, 0.5, 0.5, 0.25, 0.75])


def test_importance_sampling_matches_hand_computation():
    ds, mu = toy_dataset()
    cfg = ope.OPEConfig(target_epsilon=0.1, num_bootstrap=50)
    out = ope.estimate(always(0), ds, ("is", "pdis", "wis", "wpdis"), GAMMA, 0, np.log(mu), cfg)
    # π(0|s) = 0.95, π(1|s) = 0.05: ρ_A = (1.9, 1.9, 0.1), ρ_B = (0.2, 0.95 / 0.75).
    w_a, w_b = np.cumprod([1.9, 1.9, 0.1]), np.cumprod([0.2, 0.95 / 0.75])
    r_a, r_b, g = np.array([1.0, 2, 3]), np.array([1.0, 1]), GAMMA ** np.arange(3)
    ret_a, ret_b = g @ r_a, g[:2] @ r_b
    expected = {
        "is": (w_a[-1] * ret_a + w_b[-1] * ret_b) / 2,
        "pdis": (g @ (w_a * r_a) + g[:2] @ (w_b * r_b)) / 2,
        "wis": (w_a[-1] * ret_a + w_b[-1] * ret_b) / (w_a[-1] + w_b[-1]),
        # B is absorbed after its end: its last weight stays in the step-2 denominator.
        "wpdis": 1.0
        + GAMMA * (w_a[1] * 2 + w_b[1] * 1) / (w_a[1] + w_b[1])
        + GAMMA**2 * (w_a[2] * 3) / (w_a[2] + w_b[1]),
    }
    assert expected["is"] == pytest.approx(1.18468, abs=1e-4)  # the numbers themselves
    assert expected["wpdis"] == pytest.approx(4.16892, abs=1e-4)
    for name, value in expected.items():
        assert out[name]["value"] == pytest.approx(value, rel=1e-5), name
        assert out[name]["behavior"] == "logged"
        assert out[name]["discount"] == GAMMA and out[name]["episodes"] == 2
        assert out[name]["target"] == "epsilon_greedy(epsilon=0.1)"


def test_weight_clipping():
    ds, mu = toy_dataset()
    cfg = ope.OPEConfig(target_epsilon=0.1, num_bootstrap=10, max_weight=2.0)
    out = ope.estimate(always(0), ds, ("pdis",), GAMMA, 0, np.log(mu), cfg)["pdis"]
    w_a = np.minimum(np.cumprod([1.9, 1.9, 0.1]), 2.0)  # w_1 = 3.61 -> 2
    w_b = np.cumprod([0.2, 0.95 / 0.75])
    g = GAMMA ** np.arange(3)
    expected = (g @ (w_a * [1, 2, 3]) + g[:2] @ w_b) / 2
    assert out["value"] == pytest.approx(expected, rel=1e-5)
    assert out["clipped_fraction"] == pytest.approx(1 / 5)
    assert out["max_weight"] == 2.0


def test_logged_densities_in_environment_units():
    """The same data with actions scaled by 2 (bounds [-2, 2]) and environment densities
    (log 2 lower per dimension) gives the same IS estimates."""
    unit = random_dataset(n=60, obs_dim=2, act_dim=1, episode_len=10)
    mu = np.full(len(unit), np.log(0.5))  # uniform on [-1, 1]
    scaled = unit.replace(
        actions=2 * unit.actions, action_low=-2 * np.ones(1), action_high=2 * np.ones(1)
    )
    cfg = ope.OPEConfig(num_bootstrap=10, target_std=0.5)
    a = ope.estimate(zero_action, unit, ("is", "pdis"), GAMMA, 0, mu, cfg)
    b = ope.estimate(zero_action, scaled, ("is", "pdis"), GAMMA, 0, mu - np.log(2), cfg)
    for name in ("is", "pdis"):
        assert b[name]["value"] == pytest.approx(a[name]["value"], rel=1e-4)


def test_truncated_gaussian_is_a_density_on_the_box():
    x = jnp.linspace(-1, 1, 20001)[:, None]
    for mean, std in ((0.0, 0.1), (0.95, 0.3), (-1.0, 2.0)):
        logp = truncated_normal(x, jnp.full_like(x, mean), jnp.full_like(x, np.log(std)))
        assert float(jnp.trapezoid(jnp.exp(logp), x[:, 0])) == pytest.approx(1.0, abs=1e-3)


# --------------------------------------------------------------------------- DR identities


def dr_inputs(seed: int = 0):
    ds = random_dataset(n=120, obs_dim=2, act_dim=1, episode_len=15, seed=seed)
    ds = ds.replace(terminals=ds.timeouts & (np.arange(len(ds)) % 2 == 0))  # some of each
    traj = Trajectories.from_dataset(ds)
    rng = np.random.default_rng(seed)
    log_w, _ = log_weights(traj, jnp.asarray(rng.normal(0, 0.3, len(ds))), None)
    return ds, traj, log_w, rng


def test_dr_with_zero_model_is_pdis():
    ds, traj, log_w, _ = dr_inputs()
    zeros = jnp.zeros(len(ds))
    comp = dr_components(traj, log_w, zeros, zeros, jnp.zeros(traj.num_episodes), GAMMA)
    ones = jnp.ones(traj.num_episodes)
    pdis = importance.pdis_stat(is_components(traj, log_w, GAMMA), ones)
    assert float(dr.dr_stat(comp, ones)) == pytest.approx(float(pdis), rel=1e-5)


def test_dr_with_exact_model_is_the_model_value():
    ds, traj, log_w, rng = dr_inputs(1)
    v_next = jnp.asarray(rng.normal(size=len(ds)), jnp.float32)
    q_taken = traj.rew + GAMMA * (1 - traj.terminal) * v_next  # zero TD residual everywhere
    v_start = jnp.asarray(rng.normal(size=traj.num_episodes), jnp.float32)
    comp = dr_components(traj, log_w, q_taken, v_next, v_start, GAMMA)
    assert float(dr.dr_stat(comp, jnp.ones(traj.num_episodes))) == pytest.approx(
        float(v_start.mean()), abs=1e-5
    )


# --------------------------------------------------------------------------- FQE


def chain_dataset(episodes: int, horizon: int, discrete: bool, seed: int = 0) -> Dataset:
    """Episodes of `horizon` steps ending in a terminal; observations one-hot in t. Continuous:
    reward 1 per step, random actions. Discrete: random actions 0/1, reward 2 for action 0
    and 1 for action 1."""
    rng = np.random.default_rng(seed)
    t = np.tile(np.arange(horizon), episodes)
    eye = np.eye(horizon, dtype=np.float32)
    if discrete:
        actions = rng.integers(0, 2, size=(len(t), 1))
        rewards = np.where(actions[:, 0] == 0, 2.0, 1.0).astype(np.float32)
    else:
        actions = rng.uniform(-1, 1, size=(len(t), 1)).astype(np.float32)
        rewards = np.ones(len(t), np.float32)
    return Dataset(
        observations=eye[t],
        actions=actions,
        rewards=rewards,
        next_observations=eye[np.minimum(t + 1, horizon - 1)],
        terminals=t == horizon - 1,
        timeouts=np.zeros(len(t), bool),
        action_low=None if discrete else -np.ones(1, np.float32),
        action_high=None if discrete else np.ones(1, np.float32),
        num_actions=2 if discrete else 0,
    )


HORIZON = 5
TRUE_VALUE = sum(GAMMA**t for t in range(HORIZON))  # 4.0951: reward 1 for 5 steps


def test_fqe_continuous_finite_horizon():
    ds = chain_dataset(episodes=40, horizon=HORIZON, discrete=False)
    out = ope.estimate(zero_action, ds, ("fqe",), GAMMA, 0, config=FAST)["fqe"]
    assert out["value"] == pytest.approx(TRUE_VALUE, abs=0.15)
    assert out["discount"] == GAMMA and out["fqe_steps"] == FAST.fqe_steps
    lo, hi = out["ci"]
    assert lo <= out["value"] <= hi


def test_fqe_and_dr_discrete_evaluate_the_policy_not_the_max():
    """π always takes action 1 (reward 1): FQE's value is Σ γ^t, not the greedy maximum's
    2 Σ γ^t. DR evaluates the ε-greedy target: reward 1 + ε/2 per step."""
    ds = chain_dataset(episodes=40, horizon=HORIZON, discrete=True)
    mu = np.full(len(ds), np.log(0.5))
    out = ope.estimate(always(1), ds, ("fqe", "dr"), GAMMA, 0, mu, FAST)
    assert out["fqe"]["value"] == pytest.approx(TRUE_VALUE, abs=0.15)
    eps = FAST.target_epsilon
    assert out["dr"]["value"] == pytest.approx((1 + eps / 2) * TRUE_VALUE, abs=0.2)
    assert out["dr"]["behavior"] == "logged" and "fqe_loss" in out["dr"]


# --------------------------------------------------------------------------- model-based


def test_model_based_on_the_chain():
    """A fitted model of the chain: rewards are clipped to the data's range, all 1, so H = 5
    model steps are worth Σ γ^t exactly, whatever the model learned of the states."""
    ds = chain_dataset(episodes=40, horizon=HORIZON, discrete=False)
    cfg = dataclasses.replace(FAST, mb_epochs=2)
    out = ope.estimate(zero_action, ds, ("mb",), GAMMA, 0, config=cfg)["mb"]
    assert out["value"] == pytest.approx(TRUE_VALUE, rel=1e-5)
    assert out["model"] == "fitted" and out["model_epochs"] == 2 and out["horizon"] == HORIZON
    assert out["termination"] == "none"


def test_model_based_rollout_stops_at_a_terminal():
    """A Hopper model that lowers z by 0.25 a step from z = 1: alive at 0.75, fallen at 0.5
    (z <= 0.7); reward 1 per step: worth 1 + γ, however long the horizon."""
    n = 20
    obs = np.zeros((n, 3), np.float32)
    obs[:, 0] = np.linspace(0.0, 1.5, n)
    obs[::10, 0] = 1.0  # the episode starts
    ds = Dataset(
        observations=obs,
        actions=np.zeros((n, 1), np.float32),
        rewards=np.ones(n, np.float32),
        next_observations=obs,
        terminals=np.zeros(n, bool),
        timeouts=np.arange(n) % 10 == 9,
        action_low=-np.ones(1, np.float32),
        action_high=np.ones(1, np.float32),
    )
    tiny = dynamics.DynamicsConfig(num_members=3, num_elites=2, hidden=(4,), weight_decay=(0, 0))
    model = constant_dynamics(tiny, 3, 1, jnp.array([-0.25, 0.0, 0.0, 1.0]), jnp.full(4, -100.0))
    given = (model.replace(termination="hopper"), {"model": "given"})
    out = ope.estimate(zero_action, ds, ("mb",), GAMMA, 0, config=FAST, dynamics_model=given)
    assert out["mb"]["value"] == pytest.approx(1 + GAMMA, rel=1e-5)
    assert out["mb"]["model"] == "given" and out["mb"]["horizon"] == 10


def test_all_leaves_model_based_out_on_discrete_data():
    ds = chain_dataset(episodes=10, horizon=HORIZON, discrete=True)
    out = ope.estimate(always(1), ds, "all", GAMMA, 0, np.full(len(ds), np.log(0.5)), FAST)
    assert "mb" not in out and "fqe" in out
    with pytest.raises(ConfigError, match="continuous actions"):
        ope.estimate(always(1), ds, ("mb",), GAMMA, 0, config=FAST)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_interval_contains_estimate_and_narrows_with_episodes():
    ds = random_discrete_dataset(n=1000, obs_dim=3, num_actions=2, episode_len=10)
    mu = np.full(len(ds), np.log(0.5))
    cfg = ope.OPEConfig(num_bootstrap=300, target_epsilon=0.5)
    many = ope.estimate(always(0), ds, ("is", "pdis", "wis", "wpdis"), GAMMA, 0, mu, cfg)
    few_ds = ope.select_episodes(ds, np.arange(10))
    few = ope.estimate(always(0), few_ds, ("pdis",), GAMMA, 0, mu[: len(few_ds)], cfg)
    for r in many.values():
        assert r["ci"][0] <= r["value"] <= r["ci"][1] and r["confidence"] == 0.95
    width = lambda r: r["ci"][1] - r["ci"][0]  # noqa: E731
    assert width(few["pdis"]) > 1.5 * width(many["pdis"])  # 10x the episodes: ~1/sqrt(10)
    assert few["pdis"]["episodes"] == 10 and many["pdis"]["episodes"] == 100


# --------------------------------------------------------------------------- behaviour model


def test_fitted_behavior_when_no_log_probs():
    ds = random_discrete_dataset(n=1000, obs_dim=3, num_actions=2, episode_len=20)
    rng = np.random.default_rng(1)
    ds = ds.replace(actions=(rng.uniform(size=(len(ds), 1)) > 0.8).astype(np.int64))  # P(0)=.8
    out = ope.estimate(always(0), ds, ("is", "wis"), GAMMA, 0, config=FAST)
    assert out["is"]["behavior"] == "fitted" and out["wis"]["behavior"] == "fitted"
    log_probs, info = ope.fit_behavior_log_probs(ds, FAST)
    p0 = np.exp(log_probs[ds.actions[:, 0] == 0]).mean()
    assert p0 == pytest.approx(0.8, abs=0.06)
    assert info["behavior_nll"] == pytest.approx(0.5, abs=0.06)  # entropy of Bernoulli(0.8)


def test_fitted_continuous_behavior_matches_the_true_density():
    rng = np.random.default_rng(2)
    ds = random_dataset(n=1500, obs_dim=2, act_dim=1, episode_len=50)
    actions = np.clip(0.3 + 0.2 * rng.normal(size=(len(ds), 1)), -1, 1).astype(np.float32)
    ds = ds.replace(actions=actions)
    log_probs, _ = ope.fit_behavior_log_probs(ds, FAST)
    true = -0.5 * ((actions[:, 0] - 0.3) / 0.2) ** 2 - np.log(0.2 * np.sqrt(2 * np.pi))
    assert log_probs.mean() == pytest.approx(true.mean(), abs=0.15)


# --------------------------------------------------------------------------- data and errors


def test_split_episodes_is_episode_wise():
    ds = random_dataset(n=200, episode_len=20)
    train, held = ope.split_episodes(ds, 0.25, seed=3)
    assert (train.num_episodes, held.num_episodes) == (8, 2)
    assert len(train) + len(held) == len(ds)
    assert all(held.episode_lengths() == 20)


def test_split_in_place_equals_the_copying_split_and_reuses_the_arrays():
    """Episodes of unequal lengths, the last one open (no timeout): the in-place split's
    train part is the copying split's, held in the dataset's own (overwritten) arrays."""
    ds = random_dataset(n=230, episode_len=20)
    ds = ds.replace(behavior_log_probs=np.arange(230, dtype=np.float32))
    ds.timeouts[[5, 47]] = True  # episodes of 6, 14, 20, ... rows
    want_train, want_held = ope.split_episodes(ds, 0.3, seed=1)
    names = (*COLUMNS, "behavior_log_probs")
    copy = ds.replace(**{c: getattr(ds, c).copy() for c in names})  # arrays of its own
    train, held = ope.split_episodes(copy, 0.3, seed=1, in_place=True)
    for name in names:
        np.testing.assert_array_equal(getattr(train, name), getattr(want_train, name))
        np.testing.assert_array_equal(getattr(held, name), getattr(want_held, name))
    assert np.shares_memory(train.observations, copy.observations)
    assert train.num_episodes == want_train.num_episodes


def test_compact_rows_moves_rows_forward_in_small_blocks():
    arr = np.arange(40.0).reshape(20, 2)
    rows = np.array([1, 2, 3, 7, 8, 12, 13, 14, 15, 19])
    want = arr[rows].copy()
    out = episodes.compact_rows(arr, rows, block=2)
    np.testing.assert_array_equal(out, want)
    assert np.shares_memory(out, arr) and out.shape == (10, 2)


def test_compact_columns_copies_columns_that_share_a_buffer():
    """observations and next_observations as views of one buffer (as a chained synthetic
    dataset makes them): moving one in place would corrupt the other, so both are copied."""
    ds = random_dataset(n=40, episode_len=10)
    chain = np.concatenate([ds.observations, ds.next_observations[-1:]])
    ds = ds.replace(observations=chain[:-1], next_observations=chain[1:])
    rows = np.arange(10, 40)
    want = {c: getattr(ds, c)[rows].copy() for c in ("observations", "next_observations")}
    cols = episodes.compact_columns(ds, rows)
    for name, value in want.items():
        np.testing.assert_array_equal(cols[name], value)
        assert not np.shares_memory(cols[name], chain)


def test_estimator_names():
    assert ope.parse_estimators("all") == ope.ESTIMATORS
    assert ope.check_estimators("dr,fqe") == ("fqe", "dr")
    cfg = ope.config_from_overrides({"fqe_hidden": "64,64", "max_weight": "none"})
    assert cfg.fqe_hidden == (64, 64) and cfg.max_weight is None


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_errors_are_one_line():
    ds, mu = toy_dataset()
    with pytest.raises(ConfigError) as e:
        ope.estimate(always(0), ds, ("fqe", "mc"), behavior_log_probs=mu)
    assert "'mc'" in one_line(e) and "fqe" in one_line(e)
    empty = Dataset(
        **{
            c: getattr(ds, c)[:0]
            for c in (
                "observations",
                "actions",
                "rewards",
                "next_observations",
                "terminals",
                "timeouts",
            )
        },
        num_actions=2,
    )
    with pytest.raises(DataError) as e:
        ope.estimate(always(0), empty, ("is",))
    assert "empty" in one_line(e)
    with pytest.raises(DataError) as e:
        ope.estimate(always(0), ds, ("is",), behavior_log_probs=mu[:3])
    assert "behavior_log_probs" in one_line(e)
    with pytest.raises(ConfigError) as e:
        ope.estimate(zero_action, ds, ("is",), behavior_log_probs=mu)  # float actions
    assert "discrete" in one_line(e)
    with pytest.raises(ConfigError) as e:
        ope.config_from_overrides({"target_sd": "0.2"})
    assert "target_sd" in one_line(e)
    with pytest.raises(ConfigError):
        ope.estimate(always(0), ds, ("is",), discount=1.5, behavior_log_probs=mu)


def test_ope_imports_nothing_above_it():
    banned = ("offrl.training", "offrl.evaluate", "offrl.policy", "offrl.cli", "offrl.bench")
    for path in Path(ope.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            assert not [n for n in names if n.startswith(banned)], path.name


def test_format_results():
    ds, mu = toy_dataset()
    out = ope.estimate(
        always(0), ds, ("is",), GAMMA, 0, np.log(mu), ope.OPEConfig(num_bootstrap=10)
    )
    assert '"is": {"value"' in ope.format_results(out, as_json=True)
    assert ope.format_results(out).startswith("is ")
    assert jax.tree_util.tree_leaves(out)  # plain JSON-able values


@pytest.mark.slow
def test_fqe_ranks_four_pendulum_policies_as_their_returns(tmp_path, capsys):
    """BC trained on four Pendulum datasets of graded quality, each valued by
    `offrl ope --estimator fqe` from the logged pendulum-medium-expert data: the estimates
    rank the policies as their true returns (10 episodes) do, Spearman >= 0.8."""
    import json

    import offrl
    from offrl import cli
    from offrl.ope.selection import spearman

    true, estimated = [], []
    for kind in ("random", "medium", "medium-expert", "expert"):
        run = tmp_path / kind
        summary = offrl.train(
            "bc", f"pendulum-{kind}", 3000, out=run, eval_every=3000, eval_episodes=10,
            progress=False,
        )  # fmt: skip
        argv = ["ope", str(run), "--dataset", "pendulum-medium-expert", "--estimator", "fqe"]
        assert cli.main(argv + ["--json"]) == 0
        estimated.append(json.loads(capsys.readouterr().out)["fqe"]["value"])
        true.append(summary["final_return"])
    rho = spearman(estimated, true)
    print(f"true returns {true}, FQE estimates {estimated}, Spearman {rho}")  # -s shows it
    assert rho >= 0.8, (true, estimated)


def test_value_range_and_the_warning_outside_it():
    """Rewards in [-2, 1], γ = 0.9: values from -2/(1 - γ) = -20 to 1/(1 - γ) = 10; rewards
    all negative: the best is one step of the largest."""
    from offrl.ope.api import value_range

    assert value_range(np.array([-2.0, 1.0]), 0.9, 50) == pytest.approx((-20.0, 10.0))
    assert value_range(np.array([-2.0, -1.0]), 0.9, 50) == pytest.approx((-20.0, -1.0))
    assert value_range(np.array([0.5, 1.0]), 1.0, 7) == pytest.approx((0.5, 7.0))
    ds = chain_dataset(episodes=10, horizon=HORIZON, discrete=False)  # reward 1 per step
    out = ope.estimate(zero_action, ds, ("fqe",), GAMMA, 0, config=FAST)["fqe"]
    assert out["value_range"] == pytest.approx([1.0, 10.0]) and "warning" not in out
    negated = ds.replace(rewards=-ds.rewards)  # the same value of 4.1 is now impossible
    out = ope.estimate(zero_action, negated, ("fqe",), GAMMA, 0, config=FAST)["fqe"]
    assert "warning" not in out and out["value"] < 0  # FQE follows the data's sign
    from offrl.ope.api import range_warning

    assert range_warning(-5.0, (-20.0, -1.0)) is None
    assert "2063 is outside [-1630, -0.001]" in range_warning(2063.0, (-1630.0, -0.001))
    line = ope.format_results({"fqe": out | {"warning": "w"}})
    assert line.endswith("warning: w")
