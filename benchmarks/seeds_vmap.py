"""Seeds in one program: does `vmap` over S seeds raise total updates/s over S processes?

For each algorithm, at the standard size of speed.py (observation 17, action 6, 256-256
MLPs, batch 256, 1M synthetic transitions), this times

- **vmap**: one process running `make_seed_group_chunk` (S seeds' states stacked, one
  compiled program), total rate = S × chunk updates / second;
- **processes**: S processes side by side, each running the ordinary single-seed chunk;
  total rate = the sum of their rates (each times the same window, after a barrier);
- **one**: one process, one seed (the reference of a lone run).

    python benchmarks/seeds_vmap.py --algos td3_bc iql --seeds 3 --seconds 20

The processes variant runs with XLA's intra-op threads set to max(1, cores // S), as the
sweep runner does for one-CPU tasks. Compilation is excluded (ahead of time).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time

XLA_SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
CHUNK = 500


def _setup(name: str, seeds: int, group: bool):
    import jax
    import jax.numpy as jnp
    from speed import offrl_config, synthetic_dataset

    from offrl import algos
    from offrl.core import (
        make_seed_group_chunk,
        make_update_chunk,
        spec_from_dataset,
        stack_states,
        to_device,
    )
    from offrl.data.transforms import make_transforms

    algo = algos.get(name)
    cfg = offrl_config(algo, name)
    ds = synthetic_dataset()
    tf = make_transforms(ds, normalize_obs=False)
    data = to_device(ds, tf)
    spec = spec_from_dataset(ds, tf)
    if not group:
        state = algo.init(cfg, spec, jax.random.key(0))
        key = jax.random.key(1)
        fn = make_update_chunk(algo, cfg, CHUNK).lower(state, data, key).compile()
        return fn, state, data, key
    states = [algo.init(cfg, spec, jax.random.key(s)) for s in range(seeds)]
    state = stack_states(states)
    key = jnp.stack([jax.random.key(100 + s) for s in range(seeds)])
    fn = make_seed_group_chunk(algo, cfg, CHUNK).lower(state, data, key).compile()
    return fn, state, data, key


def _rate(name: str, seeds: int, group: bool, seconds: float, barrier=None) -> float:
    """Median total updates/s of repeated chunk calls over `seconds`."""
    import jax

    fn, state, data, key = _setup(name, seeds, group)
    state = jax.block_until_ready(fn(state, data, key)[0])  # warm-up
    if barrier is not None:
        barrier.wait()  # every process starts timing together
    rates, start = [], time.perf_counter()
    while len(rates) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        state = jax.block_until_ready(fn(state, data, key)[0])
        rates.append(CHUNK * (seeds if group else 1) / (time.perf_counter() - t0))
    return statistics.median(rates)


def _worker(name, seconds, barrier, queue, xla_flags):
    os.environ["XLA_FLAGS"] = xla_flags
    queue.put(_rate(name, 1, False, seconds, barrier))


def processes_rate(name: str, seeds: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")  # a fresh JAX per process
    barrier, queue = ctx.Barrier(seeds), ctx.Queue()
    cores = os.cpu_count() or 1
    flags = XLA_SINGLE_THREAD if cores // seeds <= 1 else ""
    procs = [
        ctx.Process(target=_worker, args=(name, seconds, barrier, queue, flags))
        for _ in range(seeds)
    ]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def _in_subprocess(name: str, seeds: int, group: bool, seconds: float) -> float:
    """Each measurement in its own process, so one's XLA threads do not linger in another."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_queue_rate, args=(queue, name, seeds, group, seconds))
    p.start()
    rate = queue.get()
    p.join()
    return rate


def _queue_rate(queue, *args):
    queue.put(_rate(*args))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", default=["bc", "td3_bc", "iql", "cql"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--json")
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    rows = []
    for name in args.algos:
        one = _in_subprocess(name, 1, False, args.seconds)
        vm = _in_subprocess(name, args.seeds, True, args.seconds)
        procs = processes_rate(name, args.seeds, args.seconds)
        rows.append({"algo": name, "one": one, "vmap": vm, "processes": procs})
        print(f"{name}: one {one:.0f}, vmap {vm:.0f}, processes {procs:.0f} upd/s", flush=True)
    s = args.seeds
    print(f"\nTotal updates/s over S = {s} seeds ({os.cpu_count()} cores)\n")
    print(
        f"| algo | 1 seed, 1 process | {s} seeds, vmap, 1 process | {s} processes "
        "| vmap / processes |"
    )
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        ratio = r["vmap"] / r["processes"]
        cells = f"{r['one']:.0f} | {r['vmap']:.0f} | {r['processes']:.0f} | {ratio:.2f}x"
        print(f"| {r['algo']} | {cells} |")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
