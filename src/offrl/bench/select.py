"""`offrl bench select RESULTS --dataset D`: rank a sweep's runs by an off-policy estimate.

Every completed run's deterministic policy is valued from the logged dataset D alone (the
estimators of offrl.ope, one discount γ for all runs), and the runs are ranked by the first
estimator. Where the runs' environment can be made, each policy's true value (its discounted
return, the quantity OPE estimates) is measured by rollouts, and the choice is scored with the
metrics of the deep OPE benchmark (offrl.ope.selection): Spearman, regret@1/@5 and absolute
error on min-max normalized values, per estimator.

Written beside the runs: RESULTS/select/DATASET.json (settings, every run's estimates and true
value, the metrics) and DATASET.md (the tables). The JSON is rewritten after every run and
read back by the next invocation with the same settings, so an interrupted selection resumes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from offrl.atomic import atomic_write, atomic_write_json
from offrl.bench.spec import dataset_dir
from offrl.bench.tables import collect
from offrl.data import Dataset
from offrl.errors import ConfigError
from offrl.ope.config import OPEConfig, check_estimators
from offrl.ope.selection import selection_metrics

SELECT_DIR = "select"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a selection's numbers depend on: a cached entry is reused only when all match."""

    dataset: str
    estimators: tuple[str, ...] = ("fqe",)
    discount: float = 0.99
    episodes: int = 10  # rollouts per policy for its true value; 0: no true values
    seed: int = 0
    config: OPEConfig = OPEConfig()

    def record(self) -> dict:
        return dataclasses.asdict(self) | {"estimators": list(self.estimators)}


def evaluator(data: Dataset, s: Settings):
    """The OPE evaluator of the settings: make one and value every policy with it."""
    from offrl.evaluate import OPEEvaluator

    return OPEEvaluator(data, s.estimators, s.discount, s.config)


def value_policy(algo, cfg, state, env_id: str | None, ope_eval, s: Settings) -> dict:
    """One policy's off-policy estimates (`ope_eval`, from `evaluator`) and, when `env_id`
    is given and s.episodes > 0, its true value from rollouts:
    {"ope": {name: {"value", "ci", ...}}, "true": {"value", "std", "return", "episodes"} | None}."""
    from offrl.envs.rollout import rollout
    from offrl.evaluate import jax_policy

    out: dict[str, Any] = {"ope": ope_eval(algo, cfg, state, s.seed)["ope"], "true": None}
    if env_id is not None and s.episodes > 0:
        policy = jax_policy(algo, cfg, state, deterministic=True, seed=s.seed)
        r = rollout(env_id, policy, s.episodes, seed=s.seed, discount=s.discount)
        out["true"] = {
            "value": float(r.discounted.mean()),
            "std": float(r.discounted.std()),
            "return": float(r.returns.mean()),
            "episodes": s.episodes,
        }
    return out


def score_selection(entries: list[dict], estimators: tuple[str, ...]) -> dict[str, dict]:
    """The deep-OPE metrics per estimator over the entries that have a true value."""
    valued = [e for e in entries if e.get("true") is not None]
    if not valued:
        return {}
    true = [e["true"]["value"] for e in valued]
    return {n: selection_metrics([e["ope"][n]["value"] for e in valued], true) for n in estimators}


def select_runs(results_dir: Path, settings: Settings, progress: bool = True) -> dict:
    """Value every completed run of the sweep (reusing a cached selection with the same
    settings), rank them and score the ranking; write and return the selection record."""
    from offrl import recipes

    results = collect(results_dir)
    check_estimators(settings.estimators)
    out_json, out_md = _paths(results.root, settings.dataset)
    cached = _cached_entries(out_json, settings)
    runs = [r for r in results.all_runs() if r.status == "completed"]
    if not runs:
        raise ConfigError(f"{results.root}: no completed runs to select from")
    data = recipes.load_dataset(settings.dataset)
    ope_eval = evaluator(data, settings)
    entries, skipped = [], []
    for run in tqdm(runs, desc="select", unit="run", disable=not progress):
        name = str(run.dir.relative_to(results.root))
        if name not in cached:
            entry = _value_run(run.dir, data, ope_eval, settings)
            if "skipped" in entry:
                skipped.append({"run": name, "why": entry["skipped"]})
                continue
            cached[name] = entry | {"run": name, "label": run.label, "seed": run.seed}
            _write(out_json, settings, list(cached.values()), skipped)
        entries.append(cached[name])
    if not entries:
        raise ConfigError(f"{settings.dataset}: no run to value: {skipped[0]['why']}")
    record = _write(out_json, settings, entries, skipped)
    atomic_write(out_md, markdown(record).encode())
    return record


def _value_run(run_dir: Path, data: Dataset, ope_eval, s: Settings) -> dict:
    from offrl.policy import load_policy
    from offrl.training import check_env_spaces

    policy = load_policy(run_dir)
    run = policy.run
    dims = (run["obs_dim"], run["act_dim"], run.get("num_actions", 0))
    if dims != (data.obs_dim, data.act_dim, data.num_actions):
        return {"skipped": f"spaces (obs, act, actions) {dims} differ from the dataset's"}
    env_id = run.get("env_id")
    if env_id is not None:
        check_env_spaces(data, env_id, s.dataset)
    return value_policy(policy.algo, policy.cfg, policy.state, env_id, ope_eval, s)


def _paths(root: Path, dataset: str) -> tuple[Path, Path]:
    base = root / SELECT_DIR / dataset_dir(dataset)
    return base.with_suffix(".json"), base.with_suffix(".md")


def _cached_entries(path: Path, settings: Settings) -> dict[str, dict]:
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # a torn file is recomputed, never trusted
    if old.get("settings") != json.loads(json.dumps(settings.record())):
        return {}
    return {e["run"]: e for e in old.get("runs", [])}


def _write(path: Path, settings: Settings, entries: list[dict], skipped: list[dict]) -> dict:
    first = settings.estimators[0]
    ranked = sorted(entries, key=lambda e: -e["ope"][first]["value"])
    record = {
        "settings": settings.record(),
        "ranked_by": first,
        "runs": ranked,
        "skipped": skipped,
        "metrics": score_selection(ranked, settings.estimators),
    }
    atomic_write_json(path, record)
    return record


def markdown(record: dict) -> str:
    s = record["settings"]
    names, gamma = s["estimators"], s["discount"]
    with_true = any(e["true"] is not None for e in record["runs"])
    head = ["rank", "run", *names] + ([f"true value (γ={gamma})", "return"] if with_true else [])
    lines = [
        f"Runs ranked by {record['ranked_by']} on {s['dataset']}: discounted return from the "
        f"initial states, γ = {gamma}"
        + (f"; true values from {s['episodes']} rollouts each" if with_true else ""),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for i, e in enumerate(record["runs"], 1):
        cells = [str(i), e["run"]] + [_estimate(e["ope"][n]) for n in names]
        if with_true:
            t = e["true"]
            cells += ["—", "—"] if t is None else [f"{t['value']:.2f}", f"{t['return']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if record["metrics"]:
        lines += ["", *metrics_table(record["metrics"])]
    for sk in record["skipped"]:
        lines.append(f"\nskipped {sk['run']}: {sk['why']}")
    return "\n".join(lines) + "\n"


def metrics_table(metrics: dict[str, dict], digits: int = 3) -> list[str]:
    """The lines of a Markdown table: one row of selection metrics per estimator."""
    lines = [
        "| estimator | Spearman | regret@1 | regret@5 | abs. error |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, m in metrics.items():
        values = [m["spearman"]] + [m[k] for k in ("regret@1", "regret@5", "abs_error")]
        cells = ["—" if v is None else f"{v:.{digits}f}" for v in values]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _estimate(r: dict) -> str:
    lo, hi = r["ci"]
    return f"{r['value']:.2f} [{lo:.2f}, {hi:.2f}]"
