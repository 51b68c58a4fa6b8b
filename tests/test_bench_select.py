"""Policy selection: the deep-OPE metrics against hand-computed values; discounted rollout
returns; `offrl bench select` on a small sweep of real runs (ranking, metrics, resume from its
own record, skipped runs, one-line errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import random_dataset

from offrl import cli, ope, training
from offrl.bench import select
from offrl.data import io
from offrl.envs.rollout import rollout
from offrl.errors import ConfigError
from offrl.ope import selection

FAST = ope.OPEConfig(
    num_bootstrap=50,
    fqe_hidden=(16, 16),
    fqe_steps=200,
    fqe_batch_size=32,
    behavior_hidden=(16, 16),
    behavior_steps=100,
    behavior_batch_size=32,
    chunk_size=100,
)

# --------------------------------------------------------------------------- the metrics


def test_regret_abs_error_and_spearman_by_hand():
    true = [0.0, 10.0, 5.0, 2.0]
    est = [1.0, 3.0, 4.0, 0.0]  # ranks the third (true 5) first, the second (true 10) next
    assert selection.regret_at_k(est, true, 1) == pytest.approx((10 - 5) / 10)
    assert selection.regret_at_k(est, true, 2) == 0.0
    assert selection.normalized_abs_error(est, true) == pytest.approx((1 + 7 + 1 + 2) / 4 / 10)
    # ranks of est: 2, 3, 4, 1; of true: 1, 4, 3, 2; d² = 1 + 1 + 1 + 1 -> 1 - 6·4 / (4·15)
    assert selection.spearman(est, true) == pytest.approx(1 - 6 * 4 / (4 * 15))
    m = selection.selection_metrics(est, true)
    assert m == {
        "spearman": pytest.approx(0.6),
        "regret@1": pytest.approx(0.5),
        "regret@5": 0.0,
        "abs_error": pytest.approx(0.275),
        "policies": 4,
    }


def test_perfect_and_reversed_rankings():
    true = np.arange(6.0)
    assert selection.spearman(true * 3 + 1, true) == pytest.approx(1.0)
    assert selection.spearman(-true, true) == pytest.approx(-1.0)
    assert selection.regret_at_k(-true, true, 1) == 1.0
    assert selection.regret_at_k(-true, true, 5) == pytest.approx(1 / 5)


def test_degenerate_cases():
    assert selection.spearman([1.0], [2.0]) is None
    assert selection.spearman([1.0, 1.0], [1.0, 2.0]) is None  # constant estimates
    assert selection.regret_at_k([3.0, 1.0], [2.0, 2.0], 1) == 0.0  # every policy equal
    assert selection.normalized_abs_error([3.0, 1.0], [2.0, 2.0]) == 0.0
    # Tied estimates: the first listed ranks higher.
    assert selection.regret_at_k([1.0, 1.0], [0.0, 1.0], 1) == 1.0


@pytest.mark.parametrize(
    "est, true, k, fragment",
    [
        ([1.0], [1.0, 2.0], 1, "equal-length"),
        ([], [], 1, "no policies"),
        ([np.nan, 1.0], [1.0, 2.0], 1, "finite"),
        ([1.0, 2.0], [1.0, 2.0], 0, "k >= 1"),
    ],
)
def test_metric_errors(est, true, k, fragment):
    with pytest.raises(ConfigError, match=fragment):
        selection.regret_at_k(est, true, k)


def test_rollout_discounted_return_of_cartpole():
    """CartPole pays 1 per step: an episode of length L is worth (1 − γ^L) / (1 − γ)."""
    policy = lambda obs, rng: np.zeros(len(obs), np.int64)  # noqa: E731 (falls in ~10 steps)
    r = rollout("CartPole-v1", policy, 3, seed=0, discount=0.9)
    np.testing.assert_allclose(r.discounted, (1 - 0.9**r.lengths) / (1 - 0.9))
    np.testing.assert_allclose(r.returns, r.lengths)
    same = rollout("CartPole-v1", policy, 3, seed=0)
    np.testing.assert_allclose(same.discounted, same.returns)


# --------------------------------------------------------------------------- bench select


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, str]:
    """Three finished BC runs on a Pendulum-shaped log, laid out as a sweep's results."""
    root = tmp_path_factory.mktemp("sweep")
    data = str(io.write_npz(random_dataset(300, 3, 1, seed=0), root / "log.npz"))
    for label, steps in (("bc-short", 10), ("bc-long", 40)):
        for seed in (0, 1) if label == "bc-short" else (0,):
            training.train(
                "bc",
                data,
                steps,
                seed=seed,
                out=root / "results" / "log" / label / f"seed{seed}",
                overrides={"hidden": (16, 16), "batch_size": 16},
                eval_every=steps,
                eval_episodes=1,
                chunk_size=10,
                progress=False,
            )
    return root / "results", data


def settings(data: str, **kw) -> select.Settings:
    return select.Settings(
        data, **({"estimators": ("fqe", "pdis"), "episodes": 2, "config": FAST} | kw)
    )


def test_select_ranks_every_run_and_scores_the_ranking(sweep):
    results, data = sweep
    record = select.select_runs(results, settings(data), progress=False)
    runs = record["runs"]
    assert {e["run"] for e in runs} == {
        "log/bc-short/seed0",
        "log/bc-short/seed1",
        "log/bc-long/seed0",
    }
    values = [e["ope"]["fqe"]["value"] for e in runs]
    assert values == sorted(values, reverse=True) and np.all(np.isfinite(values))
    assert all(e["true"]["episodes"] == 2 and np.isfinite(e["true"]["value"]) for e in runs)
    true = [e["true"]["value"] for e in runs]
    for name in ("fqe", "pdis"):
        expected = selection.selection_metrics([e["ope"][name]["value"] for e in runs], true)
        assert record["metrics"][name] == pytest.approx(expected)
    saved = json.loads((results / "select" / "log.json").read_text())
    assert saved["runs"] == runs and saved["settings"]["discount"] == 0.99
    md = (results / "select" / "log.md").read_text()
    assert "| 1 | " in md and "| fqe | " in md and "true value (γ=0.99)" in md


def test_select_resumes_from_its_record_and_recomputes_for_new_settings(sweep, monkeypatch):
    results, data = sweep
    first = select.select_runs(results, settings(data), progress=False)
    calls = []
    real = select.value_policy
    monkeypatch.setattr(select, "value_policy", lambda *a: calls.append(1) or real(*a))
    again = select.select_runs(results, settings(data), progress=False)
    assert calls == [] and again["runs"] == first["runs"]
    other = select.select_runs(results, settings(data, episodes=0), progress=False)
    assert len(calls) == 3 and other["metrics"] == {}
    assert all(e["true"] is None for e in other["runs"])


def test_runs_of_other_spaces_are_skipped(sweep, tmp_path):
    results, _ = sweep
    other = str(io.write_npz(random_dataset(200, 4, 2, seed=1), tmp_path / "wide.npz"))
    with pytest.raises(ConfigError, match="no run to value: spaces"):
        select.select_runs(results, select.Settings(other, episodes=0, config=FAST), False)


def test_cli_select_json_and_errors(sweep, capsys):
    results, data = sweep
    argv = ["bench", "select", str(results), "--dataset", data, "--episodes", "0"]
    assert (
        cli.main(
            argv
            + ["--set", "fqe_steps=100", "--set", "num_bootstrap=20", "--json", "--no-progress"]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert record["ranked_by"] == "fqe" and len(record["runs"]) == 3
    for bad, fragment in (
        (["--estimator", "nope"], "unknown estimator"),
        (["--discount", "1.5"], "--discount"),
        (["--episodes", "-1"], "--episodes"),
        (["--set", "fqe_steps=x"], "fqe_steps"),
    ):
        assert cli.main(argv + bad) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1
    assert cli.main(["bench", "select", str(results / "nowhere"), "--dataset", data]) == 2
    assert "does not exist" in capsys.readouterr().err
