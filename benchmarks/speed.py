"""Training speed: updates per second of offrl's algorithms, and of d3rlpy's side by side.

The standard size: observation 17, action 6 (HalfCheetah's), 256-256 MLPs, batch 256, a
1M-transition synthetic dataset in memory. For every algorithm this prints updates per
second, the achieved GFLOP/s against the CPU's peak single-precision rate (measured with a
large matmul, and estimated from the CPU's frequency and vector units), and, when d3rlpy
and torch are importable, d3rlpy's updates per second and offrl's ratio to them. The
off-policy evaluators that train (FQE) are timed the same way, as rows of their own.

    python benchmarks/speed.py                       # every algorithm, 30 s each
    python benchmarks/speed.py --algos td3_bc --seconds 10 --no-d3rlpy --json speed.json

Timings are medians over repeated calls after a warm-up; compilation is excluded
(ahead-of-time). Other work on the machine skews them: the load average is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from offrl import algos
from offrl.core import (
    Batch,
    algorithm_data,
    batch_kind,
    make_update_chunk,
    spec_from_dataset,
    to_device,
)
from offrl.data.dataset import Dataset
from offrl.data.transforms import make_transforms
from offrl.ope import fqe

OBS_DIM, ACT_DIM, HIDDEN, BATCH = 17, 6, (256, 256), 256
DISCRETE_OBS_DIM, NUM_ACTIONS = 8, 4  # the discrete algorithms': LunarLander's sizes
TRANSITIONS, EPISODE_LEN = 1_000_000, 1000
EVALUATORS = ("fqe",)  # OPE models timed like algorithms: their update in the same chunk
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

# --------------------------------------------------------------------------- data


def synthetic_dataset(n: int = TRANSITIONS, seed: int = 0) -> Dataset:
    """Standard-normal observations, uniform actions in [-1, 1], 1000-step episodes ending
    in timeouts. Speed does not depend on the values, only on the sizes."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, OBS_DIM), np.float32)
    next_obs = np.roll(obs, -1, axis=0)  # within an episode, s'_t = s_{t+1}
    return Dataset(
        observations=obs,
        actions=rng.uniform(-1.0, 1.0, (n, ACT_DIM)).astype(np.float32),
        rewards=rng.standard_normal(n).astype(np.float32),
        next_observations=next_obs,
        terminals=np.zeros(n, bool),
        timeouts=np.arange(n) % EPISODE_LEN == EPISODE_LEN - 1,
        name="synthetic",
        action_low=-np.ones(ACT_DIM, np.float32),
        action_high=np.ones(ACT_DIM, np.float32),
    )


def discrete_dataset(n: int = TRANSITIONS, seed: int = 0) -> Dataset:
    """The discrete algorithms' data: LunarLander's sizes (obs 8, 4 actions), otherwise as
    `synthetic_dataset`."""
    rng = np.random.default_rng(seed)
    ds = synthetic_dataset(n, seed)
    return ds.replace(
        observations=ds.observations[:, :DISCRETE_OBS_DIM],
        next_observations=ds.next_observations[:, :DISCRETE_OBS_DIM],
        actions=rng.integers(0, NUM_ACTIONS, (n, 1)),
        action_low=None,
        action_high=None,
        num_actions=NUM_ACTIONS,
    )


# --------------------------------------------------------------------------- timing


def time_calls(call: Callable[[], Any], per_call: int, seconds: float, min_reps: int = 3):
    """Run `call` (which blocks until done) repeatedly for about `seconds`.

    Returns (median updates/s over the calls, every call's rate, CPU time / wall time).
    The CPU/wall ratio is how many cores the process kept busy on average (2.0 = both).
    """
    rates: list[float] = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while len(rates) < min_reps or time.perf_counter() - wall0 < seconds:
        start = time.perf_counter()
        call()
        rates.append(per_call / (time.perf_counter() - start))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return statistics.median(rates), rates, cpu / wall


# --------------------------------------------------------------------------- offrl


# Algorithms with a first phase time their main phase: BEAR's MMD-only warm start and
# BRAC's behaviour-only pretraining run cheaper updates than the ones that follow.
MAIN_PHASE = {"bear": {"warmstart_steps": 0}, "brac": {"behavior_pretrain_steps": 0}}


# The Decision Transformer is timed at its paper's sizes (K 20, 3 blocks of 128, 1 head,
# batch 64: its Config's defaults), and d3rlpy's at the same; the rest at the standard size.
OWN_SIZES = ("dt",)


def offrl_config(algo, name: str):
    """The Config at the standard sizes (a preset's own fields kept, e.g. marwil's)."""
    sizes = {} if name in OWN_SIZES else {"hidden": HIDDEN, "batch_size": BATCH}
    return algos.make_algo_config(name, sizes | MAIN_PHASE.get(name, {}))


def compile_chunk(algo, cfg, k: int, state, data: Batch, key: jax.Array):
    """The K-update chunk the training loop runs, compiled ahead of time."""
    return make_update_chunk(algo, cfg, k).lower(state, data, key).compile()


def xla_flops(compiled) -> float:
    """FLOPs XLA's cost analysis counts for a compiled function (dict, or a list of them)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def algorithm_setup(name: str, data: Batch, ds: Dataset):
    """(something with `.update`, its config, initial state, device data) of a name."""
    if name == "fqe":  # π(s') is precomputed once per dataset: any unit actions will do
        cfg = fqe.FQEConfig(discount=0.99, hidden=HIDDEN, batch_size=BATCH)
        state = fqe.init(cfg, OBS_DIM, ACT_DIM, jax.random.key(0))
        return fqe, cfg, state, data.replace(extra={"next_pi": data.act})
    algo = algos.get(name)
    if algos.action_kind(algo) == "discrete":  # its own (smaller) data: the copy is cheap
        ds = discrete_dataset(len(ds))
        data = to_device(ds, make_transforms(ds, normalize_obs=False))
    cfg = offrl_config(algo, name)
    tf = make_transforms(ds, normalize_obs=False)
    state = algo.init(cfg, spec_from_dataset(ds, tf), jax.random.key(0))
    if hasattr(algo, "extra_columns") or batch_kind(algo) == "trajectories":
        data = algorithm_data(algo, cfg, ds, tf)  # its own copy: AWR's returns, DT's windows
    return algo, cfg, state, data


def bench_offrl(name: str, data: Batch, ds: Dataset, seconds: float) -> dict:
    algo, cfg, state, data = algorithm_setup(name, data, ds)
    key = jax.random.key(1)

    # XLA's cost analysis counts a while loop's body once, whatever the trip count, so the
    # FLOPs of one update come from a one-update chunk (which also sizes the timed chunk).
    one = compile_chunk(algo, cfg, 1, state, data, key)
    state = one(state, data, key)[0]
    jax.block_until_ready(state)
    probe = time.perf_counter()
    for _ in range(5):
        state = one(state, data, key)[0]
    jax.block_until_ready(state)
    rough_rate = 5 / (time.perf_counter() - probe)
    if getattr(cfg, "critic_blocks", 1) > 1:  # a lax.map over blocks: its body counted once
        flat = dataclasses.replace(cfg, critic_blocks=1)
        one = compile_chunk(algo, flat, 1, state, data, key)

    # Chunks of about 1/8 of the budget: per-call overhead vanishes, and >= 8 calls give a
    # median that shrugs off a hiccup of the machine.
    k = int(np.clip(round(rough_rate * seconds / 8, -1), 10, 1000))
    start = time.perf_counter()
    chunk = compile_chunk(algo, cfg, k, state, data, key)
    compile_s = time.perf_counter() - start
    holder = {"state": chunk(state, data, key)[0]}  # warm-up call
    jax.block_until_ready(holder["state"])

    def call() -> None:
        holder["state"], _, finite = chunk(holder["state"], data, key)
        jax.block_until_ready(finite)

    rate, rates, cpu_per_wall = time_calls(call, k, seconds)
    return {
        "updates_per_s": rate,
        "rates": rates,
        "chunk": k,
        "compile_s": compile_s,
        "cpu_per_wall": cpu_per_wall,
        "xla_flops_per_update": xla_flops(one),
        "analytic_flops_per_update": analytic_flops(name, cfg),
        "own_bound_flops_per_s": own_bound(update_matmuls(name, cfg)),
    }


# --------------------------------------------------------------------------- FLOPs


Shape = tuple[int, int, int]  # (m, k, n): an (m x k) @ (k x n) product
Matmuls = dict[Shape, float]  # how many of each shape one update computes


def mlp_matmuls(rows: int, in_dim: int, out_dim: int, mode: str = "fwd") -> Matmuls:
    """The matmuls of a 256-256 MLP on `rows` inputs (biases and activations ignored).

    A dense layer k -> n is one (rows x k) @ (k x n) product forward. Backward adds the
    weight gradient Xᵀ dY, (k x rows) @ (rows x n), and the input gradient dY Wᵀ,
    (rows x n) @ (n x k), so a trained net is about 3x its forward pass, except that its
    first layer needs no input gradient (data inputs).
    mode: "fwd" (forward only: targets, frozen nets), "train" (forward + backward of a net
    being trained), "through" (forward + input gradients: a frozen net differentiated with
    respect to its input, e.g. the critic inside an actor loss).
    """
    if mode not in ("fwd", "train", "through"):
        raise ValueError(mode)
    widths = [in_dim, *HIDDEN, out_dim]
    out: Matmuls = {}
    for i, (k, n) in enumerate(zip(widths[:-1], widths[1:])):
        shapes = [(rows, k, n)]
        if mode == "train":
            shapes += [(k, rows, n)] + ([(rows, n, k)] if i else [])
        elif mode == "through":
            shapes.append((rows, n, k))
        for shape in shapes:
            out[shape] = out.get(shape, 0.0) + 1.0
    return out


def total(*parts: Matmuls, times: float = 1.0) -> Matmuls:
    """The sum of matmul counts, each multiplied by `times`."""
    out: Matmuls = {}
    for part in parts:
        for shape, count in part.items():
            out[shape] = out.get(shape, 0.0) + times * count
    return out


def matmul_flops(matmuls: Matmuls) -> float:
    return sum(2.0 * m * k * n * count for (m, k, n), count in matmuls.items())


def update_matmuls(name: str, cfg) -> Matmuls | None:
    """The matmuls of one update at batch size B, counting the work each update needs.

    bc:     the policy trained on B states (filtered_bc and bail: the same step).
    td3_bc: every step the critic: target actor on s', 2 target Qs on (s', ã), 2 Qs trained;
            every policy_freq-th step the actor: actor trained, Q1 differentiated through.
    iql:    2 target Qs on (s, a) (the V and π losses share them; XLA computes them once);
            V trained; V on s' for the Q target; 2 Qs trained; V on s for the advantage;
            π trained (AWR).
    cql:    actor trained with both Qs differentiated through (the α step's forward pass is
            the same one and XLA merges it); the critic: actor on s and s' (penalty samples,
            target action), 2 target Qs on s', and 2 Qs trained on 1 + 3N actions per state
            (the data action and N uniform, N π(·|s), N π(·|s') samples).
    sac:    CQL without the penalty: actor trained with both Qs differentiated through (the
            α step's forward pass merged into it); the critic: actor on s', 2 target Qs on
            (s', a'), 2 Qs trained on (s, a).
    sac_n:  sac's count with N critics. (edac has none: its diversity term differentiates
            the critics' action gradients, a second-order pass; XLA's count is used.)
    td3:    the same count as td3_bc (its BC term is no matmul work).
    d4pg:   target actor and target critic (K outputs) on s_n, the critic trained, the actor
            trained with the critic differentiated through (K outputs).
    rebrac: td3_bc's, with both Qs differentiated through in the actor step (it climbs
            their minimum; its critics' layer norm is no matmul work).
    ddpg:   td3's count with one critic and an actor step every step (num_critics = 1,
            policy_freq = 1).
    fqe:    td3's critic step without its target actor (π(s') is precomputed): 2 target Qs
            on (s', π(s')), 2 Qs trained on (s, a).
    The discrete algorithms: discrete_update_matmuls.
    None where there is no hand count (dt's is in analytic_flops: attention is batched).
    """
    discrete = discrete_update_matmuls(name, cfg)
    if discrete is not None:
        return discrete
    b, o, a = cfg.batch_size, OBS_DIM, ACT_DIM
    q_in = o + a
    mlp = mlp_matmuls
    if name == "fqe":
        return total(mlp(b, q_in, 1), mlp(b, q_in, 1, "train"), times=cfg.num_critics)
    if name in ("bc", "filtered_bc", "bail"):  # BC's step (%BC and BAIL select rows first)
        return mlp(b, o, a, "train")
    if name in ("td3_bc", "td3", "ddpg", "rebrac"):
        n = getattr(cfg, "num_critics", 2)  # TD3+BC's Config has no field: always twin
        critic = total(mlp(b, o, a), total(mlp(b, q_in, 1), mlp(b, q_in, 1, "train"), times=n))
        climbed = n if name == "rebrac" else 1  # ReBRAC's actor climbs min_i Q_i, TD3 Q_1
        actor = total(mlp(b, o, a, "train"), total(mlp(b, q_in, 1, "through"), times=climbed))
        return total(critic, total(actor, times=1 / cfg.policy_freq))
    if name == "d4pg":  # one critic of K outputs; both steps from the pre-step networks
        k = cfg.num_atoms
        critic = total(mlp(b, o, a), mlp(b, q_in, k), mlp(b, q_in, k, "train"))
        actor = total(mlp(b, o, a, "train"), mlp(b, q_in, k, "through"))
        return total(critic, actor)
    if name == "iql":
        targets = total(mlp(b, q_in, 1), times=2)
        value = total(mlp(b, o, 1, "train"), total(mlp(b, o, 1), times=2))
        critic = total(mlp(b, q_in, 1, "train"), times=2)
        return total(targets, value, critic, mlp(b, o, a, "train"))
    if name in ("cql", "cal_ql", "sac", "sac_n"):
        n = getattr(cfg, "num_critics", 2)
        actor = total(mlp(b, o, 2 * a, "train"), total(mlp(b, q_in, 1, "through"), times=n))
        penalized = name in ("cql", "cal_ql")  # Cal-QL's bound is no matmul work
        rows = b * (1 + 3 * cfg.num_sampled_actions) if penalized else b
        policies = 2 if penalized else 1  # CQL's actor also samples on s
        critic = total(
            total(mlp(b, o, 2 * a), times=policies),
            total(mlp(b, q_in, 1), mlp(rows, q_in, 1, "train"), times=n),
        )
        return total(actor, critic)
    return None


Q_LEARNERS = ("dqn", "ddqn", "fqi", "qrdqn", "c51", "rem", "ensemble_dqn", "cql_discrete")


def discrete_update_matmuls(name: str, cfg) -> Matmuls | None:
    """The discrete algorithms' matmuls at their sizes (obs 8, 4 actions), batch B:

    bc_discrete, filtered_bc_discrete: the policy trained on B states.
    dqn, ddqn, fqi, cql_discrete: Q trained on s, the target Q on s', and with `double` the
            online Q on s' too (it picks a'). CQL's log-sum-exp penalty is no matmul work.
    qrdqn, c51, rem, ensemble_dqn (and cql_discrete's "qr" head): the same, with n·N
            (n·K) outputs in the last layer. The (B, N, N) quantile Huber terms, C51's
            (B, K, K) projection and REM's mixture are not counted.
    bcq_discrete, spibb: Q trained on s, the target Q and the online Q on s' (the online
            one picks a' among the allowed), the behaviour net G (π̂_b) on s' and trained
            on s.
    None for the rest.
    """
    if name not in (*Q_LEARNERS, "bc_discrete", "filtered_bc_discrete", "bcq_discrete", "spibb"):
        return None
    b, o, n = cfg.batch_size, DISCRETE_OBS_DIM, NUM_ACTIONS
    mlp = mlp_matmuls
    if name in ("bc_discrete", "filtered_bc_discrete"):
        return mlp(b, o, n, "train")
    if name in ("bcq_discrete", "spibb"):
        forwards = 3 if getattr(cfg, "double", True) else 2  # Q', G, (Q) on s'
        trained = total(mlp(b, o, n, "train"), times=2)  # Q and G
        return total(trained, total(mlp(b, o, n), times=forwards))
    heads = getattr(cfg, "num_quantiles", getattr(cfg, "num_heads", getattr(cfg, "num_atoms", 1)))
    if name == "cql_discrete" and cfg.head != "qr":
        heads = 1
    out = n * heads if name in ("qrdqn", "c51", "rem", "ensemble_dqn", "cql_discrete") else n
    nexts = 2 if getattr(cfg, "double", False) else 1
    return total(mlp(b, o, out, "train"), total(mlp(b, o, out), times=nexts))


def analytic_flops(name: str, cfg) -> float:
    """Matmul FLOPs of one update (update_matmuls; dt's counted here); NaN where neither has a
    count (the tables then fall back to XLA's, marked *).

    dt:     B windows of 3K tokens through every block (projections, MLP, attention
            scores), the embeddings and the action head, trained (3x the forward).
    """
    matmuls = update_matmuls(name, cfg)
    if matmuls is not None:
        return matmul_flops(matmuls)
    if name == "dt":  # tokens T = 3K per window, width e, one block per hidden entry
        b, o, a = cfg.batch_size, OBS_DIM, ACT_DIM
        e, t = cfg.hidden[0], 3 * cfg.context
        # per token: q, k, v, out (4e²) and the MLP (8e²) multiply-adds; per window: the
        # scores QKᵀ and their use on V (2 t² e); the embeddings and the action head
        block = b * t * 2 * 12 * e * e + b * 2 * 2 * t * t * e
        embed = b * cfg.context * 2 * e * (o + a + 1 + a)
        return 3 * (len(cfg.hidden) * block + embed)  # forward, and twice that backward
    return float("nan")


# --------------------------------------------------------------------------- own bound


@functools.cache
def shape_rate(shape: Shape, seconds: float = 0.15) -> float:
    """XLA's best FLOP/s on one matmul shape: a loop of (m x k) @ (k x n) products, each
    input perturbed by the last product's sum so that none can be hoisted or skipped."""
    m, k, n = shape
    kx, kw = jax.random.split(jax.random.key(0))
    x, w = jax.random.normal(kx, (m, k)), jax.random.normal(kw, (k, n)) / np.sqrt(k)

    def run(steps: int):
        def body(_, carry):
            x, acc = carry
            return x + 1e-30 * acc, acc + jnp.sum(x @ w)

        return jax.jit(lambda x: jax.lax.fori_loop(0, steps, body, (x, 0.0))[1])

    probe = run(20)
    probe(x).block_until_ready()
    start = time.perf_counter()
    probe(x).block_until_ready()
    per_step = max((time.perf_counter() - start) / 20, 1e-7)
    steps = max(20, int(seconds / per_step))
    loop = run(steps)
    loop(x).block_until_ready()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        loop(x).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n * steps / best


def own_bound(matmuls: Matmuls | None) -> float:
    """The FLOP/s of the update's own matmuls, each at XLA's best rate on its shape (the time
    of all of them at those rates, divided into their FLOPs): what an implementation that
    did nothing but these products, as XLA computes them, would reach."""
    if not matmuls:
        return float("nan")
    seconds = sum(2.0 * m * k * n * c / shape_rate((m, k, n)) for (m, k, n), c in matmuls.items())
    return matmul_flops(matmuls) / seconds


# --------------------------------------------------------------------------- peak


def measured_peak(n: int = 4096, reps: int = 3) -> float:
    """Best FLOP/s of an n x n @ n x n float32 matmul in XLA (all cores): the practical peak."""
    ka, kb = jax.random.split(jax.random.key(0))
    x, y = jax.random.normal(ka, (n, n)), jax.random.normal(kb, (n, n))
    matmul = jax.jit(jnp.matmul).lower(x, y).compile()
    matmul(x, y).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        matmul(x, y).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = open("/proc/cpuinfo").read().split("\n\n")[0]
    except OSError:
        return {}
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def theoretical_peak() -> tuple[float, str]:
    """cores x GHz x FP32 FLOP/cycle/core, from /proc/cpuinfo: (FLOP/s, how it was found).

    FLOP/cycle/core = FMA units (2 assumed) x fp32 lanes x 2 (an FMA is 2 FLOPs). Lanes: 16
    with AVX-512, except on AMD Zen 4 (family 25), which runs a 512-bit op as two 256-bit
    halves, so 8 as with AVX2; 8 with AVX2+FMA. "cpu MHz" in a VM is usually the nominal
    (TSC) clock, not the turbo clock, so real peaks can be higher.
    """
    info = cpuinfo()
    flags, mhz = set(info.get("flags", "").split()), float(info.get("cpu MHz", "nan"))
    amd_zen4 = info.get("vendor_id") == "AuthenticAMD" and info.get("cpu family") == "25"
    if "avx512f" in flags and not amd_zen4:
        lanes, isa = 16, "AVX-512"
    elif "avx512f" in flags:
        lanes, isa = 8, "AVX-512 on Zen 4 (2x256-bit)"
    elif {"avx2", "fma"} <= flags:
        lanes, isa = 8, "AVX2+FMA"
    else:
        lanes, isa = 4, "SSE (no FMA assumed)"
    per_cycle = 2 * lanes * 2
    peak = CORES * mhz * 1e6 * per_cycle
    how = (
        f"{CORES} cores x {mhz / 1e3:.2f} GHz ('cpu MHz') x {per_cycle} FLOP/cycle "
        f"(2 FMA units x {lanes} fp32 lanes x 2; {isa})"
    )
    return peak, how


# --------------------------------------------------------------------------- d3rlpy


def import_d3rlpy():
    """(d3rlpy, torch), or (None, why not). Their import-time chatter is swallowed."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import d3rlpy
            import structlog
            import torch
    except ImportError as exc:
        return None, f"{exc}"
    # d3rlpy logs every dataset and model build at INFO through structlog.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return (d3rlpy, torch), ""


# offrl algorithms that d3rlpy also implements (BRAC and AWR it does not).
D3RLPY_COUNTERPARTS = (
    "bc", "td3_bc", "iql", "cql", "bcq", "bear", "awac", "crr", "sac", "td3", "ddpg", "dt"
)  # fmt: skip
DT_CONTEXT, DT_BATCH = 20, 64  # offrl's dt defaults, given to d3rlpy's DecisionTransformer


def d3rlpy_algo(d3rlpy, name: str):
    """The d3rlpy counterpart of an offrl algorithm at the standard sizes.

    No observation scaler: offrl standardizes observations once on the device, so d3rlpy
    should not pay a per-batch transform either (the synthetic data is standard already).
    """
    enc = d3rlpy.models.VectorEncoderFactory(hidden_units=list(HIDDEN))
    # offrl's default VAE (BCQ's reference: 750-750); d3rlpy's imitator defaults to 256-256.
    vae = d3rlpy.models.VectorEncoderFactory(hidden_units=[750, 750])
    A = d3rlpy.algos
    configs = {
        "bc": lambda: A.BCConfig(encoder_factory=enc, batch_size=BATCH, learning_rate=1e-3),
        "td3_bc": lambda: A.TD3PlusBCConfig(
            actor_encoder_factory=enc, critic_encoder_factory=enc, batch_size=BATCH
        ),
        "iql": lambda: A.IQLConfig(
            actor_encoder_factory=enc,
            critic_encoder_factory=enc,
            value_encoder_factory=enc,
            batch_size=BATCH,
        ),
        # alpha_learning_rate=0: no Lagrange multiplier for α', as offrl's default.
        "cql": lambda: A.CQLConfig(
            actor_encoder_factory=enc,
            critic_encoder_factory=enc,
            batch_size=BATCH,
            n_action_samples=10,
            alpha_learning_rate=0.0,
        ),
        # n_action_samples is d3rlpy's count in the target as well as when acting: 10, the
        # target count of offrl (and of the reference; 100 is only for acting there).
        "bcq": lambda: A.BCQConfig(
            actor_encoder_factory=enc,
            critic_encoder_factory=enc,
            imitator_encoder_factory=vae,
            batch_size=BATCH,
            n_action_samples=10,
        ),
        # Past the warm start, as offrl's MAIN_PHASE; 5 MMD samples as offrl's default.
        "bear": lambda: A.BEARConfig(
            actor_encoder_factory=enc,
            critic_encoder_factory=enc,
            imitator_encoder_factory=vae,
            batch_size=BATCH,
            n_mmd_action_samples=5,
            warmup_steps=0,
        ),
        "awac": lambda: A.AWACConfig(
            actor_encoder_factory=enc, critic_encoder_factory=enc, batch_size=BATCH
        ),
        # m = 4, mean advantage, exp filter, hard target copies every 100: both defaults.
        "crr": lambda: A.CRRConfig(
            actor_encoder_factory=enc, critic_encoder_factory=enc, batch_size=BATCH
        ),
        # Defaults match offrl's: Adam 3e-4, τ 0.005, twin critics, α learned from 1.0.
        "sac": lambda: A.SACConfig(
            actor_encoder_factory=enc, critic_encoder_factory=enc, batch_size=BATCH
        ),
        # σ 0.2, c 0.5, actor every 2nd step: the defaults of both.
        "td3": lambda: A.TD3Config(
            actor_encoder_factory=enc, critic_encoder_factory=enc, batch_size=BATCH
        ),
        # One critic, no smoothing, actor every step: d3rlpy's DDPG as offrl's.
        "ddpg": lambda: A.DDPGConfig(
            actor_encoder_factory=enc, critic_encoder_factory=enc, batch_size=BATCH
        ),
        # offrl's dt sizes: the state embedding one linear layer of 128 (d3rlpy's embedding
        # width is its encoder's output), 3 layers, 1 head, K 20, batch 64, GELU as offrl's.
        "dt": lambda: A.DecisionTransformerConfig(
            encoder_factory=d3rlpy.models.VectorEncoderFactory(
                hidden_units=[128], exclude_last_activation=True
            ),
            batch_size=DT_BATCH,
            context_size=DT_CONTEXT,
            num_heads=1,
            num_layers=3,
            activation_type="gelu",
        ),
    }
    return configs[name]().create(device="cpu:0")


def d3rlpy_dataset(d3rlpy, ds: Dataset):
    return d3rlpy.dataset.MDPDataset(
        observations=ds.observations,
        actions=ds.actions,
        rewards=ds.rewards,
        terminals=ds.terminals.astype(np.float32),
        timeouts=ds.timeouts.astype(np.float32),
    )


def d3rlpy_sampler(name: str, dataset):
    """What d3rlpy's fit loop samples for one update: transitions, or (the Decision
    Transformer, fitted by d3rlpy's `fit` on trajectories) windows of the context size."""
    if name == "dt":
        return lambda: dataset.sample_trajectory_batch(DT_BATCH, length=DT_CONTEXT)
    return lambda: dataset.sample_transition_batch(BATCH)


def time_d3rlpy_steps(algo, draw, seconds: float, window: int) -> dict:
    """The body of d3rlpy's fit loop (`draw()` a batch, then update), timed in windows of
    `window` steps; sampling and update are timed apart as well."""
    for _ in range(5):  # warm-up: allocator, first Adam steps
        algo.update(draw())
    both, update_only = [], []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while len(both) < 3 or time.perf_counter() - wall0 < seconds:
        t_sample = t_update = 0.0
        for _ in range(window):
            t0 = time.perf_counter()
            batch = draw()
            t1 = time.perf_counter()
            algo.update(batch)
            t_sample, t_update = t_sample + t1 - t0, t_update + time.perf_counter() - t1
        both.append(window / (t_sample + t_update))
        update_only.append(window / t_update)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "updates_per_s": statistics.median(both),
        "update_only_per_s": statistics.median(update_only),
        "cpu_per_wall": cpu / wall,
    }


def bench_d3rlpy(name: str, dataset, libs, seconds: float, threads: list[int]) -> dict:
    """d3rlpy's rate at each torch thread count; the fastest is kept (the fair comparison:
    on a busy machine torch's OpenMP threads can be far slower with 2 threads than with 1)."""
    d3rlpy, torch = libs
    algo = d3rlpy_algo(d3rlpy, name)
    algo.build_with_dataset(dataset)
    draw = d3rlpy_sampler(name, dataset)
    by_threads = {}
    for n in threads:
        torch.set_num_threads(n)
        rough = time_d3rlpy_steps(algo, draw, 0.0, 3)["updates_per_s"]
        window = int(np.clip(rough * seconds / len(threads) / 8, 3, 500))
        by_threads[n] = time_d3rlpy_steps(algo, draw, seconds / len(threads), window)
    best = max(by_threads, key=lambda n: by_threads[n]["updates_per_s"])
    flops = torch_flops_per_update(algo, draw)
    return by_threads[best] | {"torch_threads": best, "by_threads": by_threads} | flops


def torch_flops_per_update(algo, draw, steps: int = 2) -> dict:
    """torch's own FLOP count of d3rlpy's update, averaged over 2 steps (the actor of TD3
    and TD3+BC steps every 2nd): shows both libraries do the same work."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        for _ in range(steps):
            algo.update(draw())
    return {"torch_flops_per_update": counter.get_total_flops() / steps}


# --------------------------------------------------------------------------- report


def fmt(x: float | None, digits: int = 0) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:,.{digits}f}"


def ratio(ours: float, theirs: float | None) -> str:
    return "—" if not theirs else f"{ours / theirs:.1f}x"


def flops_per_update(o: dict) -> float:
    """The analytic count where analytic_flops has one, else XLA's."""
    analytic = o["analytic_flops_per_update"]
    return analytic if np.isfinite(analytic) else o["xla_flops_per_update"]


def print_table(results: dict, peak: float, peaks: dict[str, float]) -> None:
    print(
        "\n| algo | offrl upd/s | d3rlpy upd/s | ratio | d3rlpy update() alone | ratio "
        "| GFLOP/s | % of peak |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        o, d = r["offrl"], r.get("d3rlpy")
        rate, gflops = o["updates_per_s"], o["updates_per_s"] * flops_per_update(o) / 1e9
        d_both = d["updates_per_s"] if d else None
        d_upd = d["update_only_per_s"] if d else None
        name = name if np.isfinite(o["analytic_flops_per_update"]) else f"{name}*"
        print(
            f"| {name} | {fmt(rate, 1)} | {fmt(d_both, 1)} | {ratio(rate, d_both)} "
            f"| {fmt(d_upd, 1)} | {ratio(rate, d_upd)} | {fmt(gflops, 1)} "
            f"| {fmt(100 * gflops * 1e9 / peak, 1)} |"
        )
    print(
        "\n| algo | MFLOP/update (analytic) | (XLA) | d3rlpy's (torch) | chunk K | compile s "
        "| cores busy (CPU/wall) | % of measured peak | % of theoretical peak "
        "| own bound GFLOP/s | % of own bound |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        o, d = r["offrl"], r.get("d3rlpy")
        flops = o["updates_per_s"] * flops_per_update(o)
        print(
            f"| {name} | {fmt(o['analytic_flops_per_update'] / 1e6, 1)} "
            f"| {fmt(o['xla_flops_per_update'] / 1e6, 1)} "
            f"| {fmt(d['torch_flops_per_update'] / 1e6 if d else None, 1)} "
            f"| {o['chunk']} | {fmt(o['compile_s'], 1)} "
            f"| {fmt(o['cpu_per_wall'], 2)} | {fmt(100 * flops / peaks['measured'], 1)} "
            f"| {fmt(100 * flops / peaks['theoretical'], 1)} "
            f"| {fmt(o['own_bound_flops_per_s'] / 1e9, 1)} | {fmt(own_bound_pct(o), 1)} |"
        )


def own_bound_pct(o: dict) -> float:
    """The update's analytic FLOP rate against the bound of its own matmul shapes."""
    return 100 * o["updates_per_s"] * o["analytic_flops_per_update"] / o["own_bound_flops_per_s"]


def print_notes(results: dict, d3rlpy_note: str) -> None:
    print(
        "\nNotes: offrl's rate is K updates fused in one compiled call with minibatch sampling"
        " inside, median over calls. GFLOP/s counts the analytic matmul FLOPs (see"
        " analytic_flops); XLA's count also includes elementwise ops and Adam, and counts"
        " the actor branch of TD3 and TD3+BC (a lax.cond) on every step, though it runs every"
        " 2nd. XLA's count is taken from a one-update chunk: its cost analysis counts a scan's"
        " body once, whatever K. * no analytic count for this algorithm yet: its GFLOP/s"
        " and % of peak use XLA's count. Own bound: each of the update's matmuls (the shapes"
        " of update_matmuls, backward ones included) at XLA's best rate on that shape, timed"
        " alone in this run; '% of own bound' is the analytic rate against it (— where the"
        " algorithm has no shape count)."
    )
    print(f"d3rlpy: {d3rlpy_note}")
    for name, r in results.items():
        d = r.get("d3rlpy")
        if d:
            rates = ", ".join(
                f"{n} thread(s): {v['updates_per_s']:.1f} upd/s" for n, v in d["by_threads"].items()
            )
            print(f"  {name}: torch {rates}; CPU/wall {d['cpu_per_wall']:.2f}")


def print_targets(results: dict, peak: float) -> None:
    print(
        "\nTargets: every algorithm >= 3x d3rlpy (fit-loop rate); TD3+BC >= 75% of peak;"
        " every algorithm >= 70% of its own bound."
    )
    for name, r in results.items():
        d = r.get("d3rlpy")
        if d:
            o = r["offrl"]
            ratio = o["updates_per_s"] / d["updates_per_s"]
            # The most any implementation of this update could reach: the peak rate.
            bound = peak / flops_per_update(o) / d["updates_per_s"]
            print(
                f"  {name}: {ratio:.1f}x d3rlpy -> {'met' if ratio >= 3 else 'NOT met'}"
                f" (at 100% of peak it would be {bound:.1f}x)"
            )
    if "td3_bc" in results:
        o = results["td3_bc"]["offrl"]
        pct = 100 * o["updates_per_s"] * o["analytic_flops_per_update"] / peak
        print(f"  td3_bc: {pct:.1f}% of peak -> {'met' if pct >= 75 else 'NOT met'}")
    for name, r in results.items():
        pct = own_bound_pct(r["offrl"])
        if np.isfinite(pct):
            print(f"  {name}: {pct:.1f}% of its own bound -> {'met' if pct >= 70 else 'NOT met'}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    names = list(algos.NAMES) + list(EVALUATORS)
    p.add_argument("--algos", nargs="+", default=names, choices=names)
    p.add_argument("--seconds", type=float, default=30.0, help="timing budget per algorithm")
    p.add_argument(
        "--d3rlpy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time d3rlpy when it is importable (default: yes)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        nargs="+",
        default=sorted({1, CORES}),
        help="torch thread counts to try for d3rlpy; the fastest is reported",
    )
    p.add_argument("--transitions", type=int, default=TRANSITIONS)
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON here")
    return p.parse_args(argv)


def environment() -> dict:
    info = cpuinfo()
    return {
        "cpu": info.get("model name", platform.processor()),
        "cores": CORES,
        "load_avg_at_start": os.getloadavg(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "python": platform.python_version(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = environment()
    print(
        f"{env['cpu']}, {CORES} cores, jax {env['jax']} ({env['backend']}), "
        f"load average at start {env['load_avg_at_start'][0]:.2f}"
        + (" — the machine is busy: numbers are noisy" if env["load_avg_at_start"][0] > 0.5 else "")
    )

    theo, how = theoretical_peak()
    meas = measured_peak()
    peaks = {"measured": meas, "theoretical": theo, "small_matmul": shape_rate((256, 256, 256))}
    peak = max(meas, theo) if np.isfinite(theo) else meas
    print(f"Peak FP32, measured: {meas / 1e9:.1f} GFLOP/s (best 4096^3 matmul in XLA)")
    print(f"Peak FP32, theoretical: {theo / 1e9:.1f} GFLOP/s = {how}")
    print(f"'% of peak' uses the larger, {peak / 1e9:.1f} GFLOP/s (the conservative choice).")
    print(
        f"XLA on the update's shape (a loop of 256x256 @ 256x256, shape_rate): "
        f"{peaks['small_matmul'] / 1e9:.1f} GFLOP/s"
    )

    ds = synthetic_dataset(args.transitions)
    # One device copy for every algorithm: the transforms (standardizing, reward scaling)
    # change values, not sizes, so the identity does for timing.
    data = to_device(ds, make_transforms(ds, normalize_obs=False))
    print(
        f"Dataset: {len(ds):,} synthetic transitions in memory; obs {OBS_DIM}, act {ACT_DIM}, "
        f"MLPs {'-'.join(map(str, HIDDEN))}, batch {BATCH}"
    )

    hint = "pip install torch==2.13.0 (the CPU wheel), then pip install -e '.[bench]'"
    libs, why = import_d3rlpy() if args.d3rlpy else (None, "")
    d3_note = f"not timed ({why}); to include it: {hint}" if why else "skipped (--no-d3rlpy)"
    d3_data = None
    if libs:
        start = time.perf_counter()
        d3_data = d3rlpy_dataset(libs[0], ds)
        d3_note = (
            f"d3rlpy {libs[0].__version__}, torch {libs[1].__version__}, device cpu:0; "
            f"the same {len(ds):,} transitions as an MDPDataset (built in "
            f"{time.perf_counter() - start:.1f} s). Measured as the body of d3rlpy's fit loop: "
            f"dataset.sample_transition_batch({BATCH}) then algo.update(batch), median over "
            f"windows; 'update() alone' leaves the sampling out."
        )

    results: dict[str, dict] = {}
    for name in args.algos:
        sys.stdout.flush()
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        results[name] = {"offrl": bench_offrl(name, data, ds, args.seconds)}
        if d3_data is not None and name in D3RLPY_COUNTERPARTS:
            results[name]["d3rlpy"] = bench_d3rlpy(
                name, d3_data, libs, args.seconds, args.torch_threads
            )

    env["load_avg_at_end"] = os.getloadavg()
    print_table(results, peak, peaks)
    print_notes(results, d3_note)
    print_targets(results, peak)
    print(f"Load average at end: {env['load_avg_at_end'][0]:.2f}")
    if args.json:
        out = {"environment": env, "peaks": peaks, "peak_used": peak, "peak_how": how}
        with open(args.json, "w") as f:
            json.dump(out | {"d3rlpy": d3_note, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
