"""Sweep cost against the bare work, side by side: `python tests/benchmarks/bench.py [--repeats 3]`.

Runs the bare loop and the project's sweep on the same 144-job KNN grid (heart data), in lean,
full and 2-worker modes, plus a 1,000-job flatness probe; prints medians, ratios, ms per job
and peak RSS as a Markdown table (paste it into tests/benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
HEART = REPO / "tests" / "data" / "heart_cleveland.csv"
PLAIN = [sys.executable, str(REPO / "tests" / "benchmarks" / "plain_loop.py"), str(HEART)]
GRID = [
    "model=knn",
    "model.n_neighbors=range(1,25)",
    "model.weights=uniform,distance",
    "model.metric=euclidean,manhattan,chebyshev",
]
N_JOBS = 24 * 2 * 3
LEAN = ["mlflow.log_plots=false", "mlflow.log_model=false"]
TWO_WORKERS = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
STOCK_LAUNCHER = [
    "hydra.launcher._target_=hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
]
# 1,000 jobs of the same work (the seed only reshuffles the CV folds), so that a late job costs
# more than an early one only if the sweep's own cost grows (a grid up to n_neighbors=100 also
# grew the work itself: k=100 costs ~25% more than k=1)
FLAT_GRID = ["model=knn", "seed=range(0,1000)"]


def timed(command: list[str], env: dict[str, str], repo: Path = REPO) -> tuple[float, int]:
    """(wall seconds, peak RSS in MB) of one whole process, started in `repo`."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.returncode not in (0,):
        raise RuntimeError(f"{command} failed ({process.returncode}):\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss // 1024


def timed_pair(command: list[str], env: dict[str, str]) -> float:
    """Wall seconds until two copies of `command`, started together, have both ended: what two
    cores give two processes of the same work on this machine."""
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL) for _ in range(2)
    ]
    if any(p.wait() != 0 for p in processes):
        raise RuntimeError(f"{command} failed")
    return time.perf_counter() - started


def empty_store(template: Path, work: Path) -> str:
    """A fresh copy of an already-migrated sqlite store (created once, as a user's store is)."""
    target = work / f"mlflow{time.time_ns()}.db"
    shutil.copy(template, target)
    return f"sqlite:///{target}"


def sweep(
    extra: list[str],
    template: Path,
    work: Path,
    grid: list[str] = GRID,
    uri: str | None = None,
    repo: Path = REPO,
) -> tuple[float, int, str]:
    """(wall s, peak RSS MB, tracking URI) of one sweep of the checkout `repo`; a fresh sqlite
    store unless `uri`."""
    uri = uri or empty_store(template, work)
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(repo)}
    command = [
        python_of(repo),
        "-m",
        "src.train",
        "-m",
        *grid,
        "data=heart",
        f"data.path={HEART}",
        f"hydra.sweep.dir={work}/sweep{time.time_ns()}",
        *extra,
    ]
    wall, rss = timed(command, env, repo)
    return wall, rss, uri


def python_of(repo: Path) -> str:
    """The interpreter of `repo`'s own environment (its editable install maps `src` and the
    Hydra plugins to its own files), or this one's when it has none."""
    own = repo / ".venv" / "bin" / "python"
    return str(own) if repo != REPO and own.exists() else sys.executable


def flatness(template: Path, work: Path) -> dict[str, float]:
    """A 1,000-job lean sweep: job cost early vs late (from the children's start times), the
    end-of-sweep summary time, and peak RSS."""
    wall, rss, uri = sweep(LEAN, template, work, FLAT_GRID)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("heart-classification")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    parent = next(r for r in runs if r.data.tags.get("sweep") == "true")
    children = sorted(
        (r for r in runs if r is not parent), key=lambda r: int(r.data.tags["job_number"])
    )
    starts = [c.info.start_time for c in children]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    early, late = statistics.median(gaps[4:15]), statistics.median(gaps[-11:])
    summary_s = (parent.info.end_time - max(c.info.end_time for c in children)) / 1000
    return {
        "jobs": len(children),
        "wall_s": wall,
        "peak_rss_mb": rss,
        "job_10_ms": early,
        "job_1000_ms": late,
        "late_vs_early": late / early,
        "summary_s": summary_s,
    }


def print_flatness(flat: dict[str, float]) -> None:
    """One line: the 1,000-job probe's figures."""
    print(
        f"\n1,000-job lean sweep: {flat['wall_s']:.0f} s, job 10 {flat['job_10_ms']:.0f} ms, "
        f"job 1,000 {flat['job_1000_ms']:.0f} ms ({flat['late_vs_early']:.2f}x), end-of-sweep "
        f"summary {flat['summary_s']:.1f} s, peak RSS {flat['peak_rss_mb']} MB"
    )


def server_table(template: Path, work: Path) -> None:
    """Per-child cost and throughput through `mlflow server` on PostgreSQL, with 1, 2 and 4
    workers, next to the embedded sqlite store (lean 144-job grid, one run each)."""
    sys.path.insert(0, str(REPO))
    from tests.helpers import running_postgres
    from tests.tracking.test_server import running_server

    workers = {1: [], 2: TWO_WORKERS, 4: ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"]}
    print("\n| store | workers | wall s | ms/child | children/s |")
    print("|---|---|---|---|---|")
    with running_postgres() as postgres, running_server(postgres, work, 2) as url:
        for store, uri in (("sqlite (embedded)", None), ("mlflow server + PostgreSQL", url)):
            for n, extra in workers.items():
                wall = sweep(LEAN + extra, template, work, uri=uri)[0]
                print(
                    f"| {store} | {n} | {wall:.1f} | {1000 * wall / N_JOBS:.0f} | "
                    f"{N_JOBS / wall:.1f} |",
                    flush=True,
                )


def server_sweep(template: Path, work: Path, jobs: int) -> None:
    """A `jobs`-job lean sweep on 2 workers through `mlflow server` on PostgreSQL (2 server
    workers, all on this machine's two cores): children per second, and whether every job is
    exactly one FINISHED child."""
    sys.path.insert(0, str(REPO))
    from src.tracking.store import search_all_runs
    from tests.helpers import running_postgres
    from tests.tracking.test_server import running_server

    grid = ["model=knn", f"seed=range(0,{jobs})"]
    with running_postgres() as postgres, running_server(postgres, work, 2) as url:
        wall = sweep(LEAN + TWO_WORKERS, template, work, grid, uri=url)[0]
        client = MlflowClient(url)
        experiment = client.get_experiment_by_name("heart-classification")
        runs = search_all_runs(client, [experiment.experiment_id], "")
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    finished = [c for c in children if c.info.status == "FINISHED"]
    keys = {c.data.tags.get("job_key") for c in finished}
    print(
        f"\n{jobs:,}-job lean sweep, 2 workers, mlflow server + PostgreSQL: {wall:.0f} s, "
        f"{jobs / wall:.1f} children/s; {len(children):,} children, {len(finished):,} FINISHED, "
        f"{len(keys):,} distinct jobs, parent {parent.info.status}"
    )


def against(other: Path, template: Path, work: Path, repeats: int) -> None:
    """Lean and full per-job cost of this checkout and of `other` (another commit's checkout,
    e.g. a git worktree with its own `.venv`: `make .venv/.installed` there), run alternately,
    each pair beside a run of the plain floor: the before/after pair of one change, and both
    against the floor of the same minutes."""
    print(f"\n{N_JOBS}-job KNN grid, this checkout against {other}, {repeats} pairs\n")
    print(
        "| mode | this ms/job | other ms/job | this / other (median of pairs) | pairs "
        "| this x floor | other x floor |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, extra in (("lean", LEAN), ("full", [])):
        pairs, floors = [], []
        for _ in range(repeats):
            floors.append(timed(PLAIN, os.environ)[0])
            pairs.append(
                (sweep(extra, template, work)[0], sweep(extra, template, work, repo=other)[0])
            )
        mine = statistics.median(a for a, _ in pairs)
        theirs = statistics.median(b for _, b in pairs)
        ratios = [a / b for a, b in pairs]
        floor = statistics.median(floors)
        print(
            f"| {mode} | {1000 * mine / N_JOBS:.0f} | {1000 * theirs / N_JOBS:.0f} | "
            f"{statistics.median(ratios):.3f} | {', '.join(f'{r:.3f}' for r in ratios)} | "
            f"{mine / floor:.2f} | {theirs / floor:.2f} |",
            flush=True,
        )


def heartbeat_cost(work: Path) -> None:
    """What a job's heartbeat costs it (thread started, client made, thread stopped), in
    process against a sqlite store: the median of 5 rounds of 500."""
    sys.path.insert(0, str(REPO))
    from src.tracking.heartbeat import beating

    uri = f"sqlite:///{work}/heartbeat.db"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("heartbeat")).info.run_id
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(500):
            with beating(uri, run, 30):
                pass
        rounds.append((time.perf_counter() - started) / 500 * 1000)
    print(f"A job's heartbeat: {statistics.median(rounds):.2f} ms "
          f"(rounds: {', '.join(f'{r:.2f}' for r in rounds)})")  # fmt: skip


def launcher_pair(
    template: Path, work: Path, first_ours: bool
) -> tuple[tuple[float, int], tuple[float, int]]:
    """(ours, stock): the lean grid on 2 joblib workers with our launcher and with the stock
    one, back to back, in the order given (alternate it between repeats)."""
    ours, stock = LEAN + TWO_WORKERS, LEAN + TWO_WORKERS + STOCK_LAUNCHER
    if first_ours:
        ours_run = sweep(ours, template, work)[:2]
        return ours_run, sweep(stock, template, work)[:2]
    stock_run = sweep(stock, template, work)[:2]
    return sweep(ours, template, work)[:2], stock_run


def print_launchers(ours: list[tuple[float, int]], stock: list[tuple[float, int]]) -> None:
    """Our joblib launcher against the stock one, as the median of the per-repeat ratios."""
    ratios = [o / s for (o, _), (s, _) in zip(ours, stock, strict=True)]
    print(
        f"Our joblib launcher / the stock one (lean, 2 workers): {statistics.median(ratios):.3f},"
        f" the median of the per-repeat ratios {', '.join(f'{r:.3f}' for r in ratios)} (ours "
        f"{statistics.median(o for o, _ in ours):.1f} s, stock "
        f"{statistics.median(s for s, _ in stock):.1f} s)"
    )


def main() -> None:
    """Run everything, print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-flatness", action="store_true")
    parser.add_argument("--flatness-only", action="store_true")
    parser.add_argument("--server", action="store_true", help="only the tracking-server table")
    parser.add_argument(
        "--server-jobs", type=int, help="only one sweep of this many jobs through the server"
    )
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--against", type=Path, help="only lean and full, paired with this other checkout"
    )
    parser.add_argument("--heartbeat", action="store_true", help="only a job's heartbeat cost")
    parser.add_argument(
        "--launchers", action="store_true", help="only our joblib launcher against the stock one"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    template = work / "template.db"
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{template}"}
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from src.tracking.store import ensure_experiment as e; "
            f"e('sqlite:///{template}', 'heart-classification')",
        ],
        cwd=REPO,
        env=env,
        check=True,
    )
    if args.heartbeat:
        heartbeat_cost(work)
        shutil.rmtree(work, ignore_errors=True)
        return
    if args.launchers:
        pairs = [launcher_pair(template, work, first_ours=i % 2 == 0) for i in range(args.repeats)]
        print_launchers([o for o, _ in pairs], [s for _, s in pairs])
        shutil.rmtree(work, ignore_errors=True)
        return
    if args.against:
        against(args.against.resolve(), template, work, args.repeats)
        shutil.rmtree(work, ignore_errors=True)
        return
    if args.server_jobs:
        server_sweep(template, work, args.server_jobs)
        shutil.rmtree(work, ignore_errors=True)
        return
    if args.server:
        server_table(template, work)
        shutil.rmtree(work, ignore_errors=True)
        return
    if args.flatness_only:
        print_flatness(flatness(template, work))
        shutil.rmtree(work, ignore_errors=True)
        return
    bare_cmd = [sys.executable, str(REPO / "tests" / "benchmarks" / "bare_loop.py"), str(HEART)]
    results: dict[str, list[tuple[float, int]]] = {
        "plain": [],
        "plain_accuracy_only": [],
        "bare": [],
        "lean": [],
        "full": [],
        "lean_2_workers": [],
        "lean_2_workers_stock": [],
    }
    bare_pair: list[float] = []
    bare_env = os.environ | {"PYTHONPATH": str(REPO)}
    for _ in range(args.repeats):  # interleaved, so drift in the machine hits every mode alike
        results["plain"].append(timed(PLAIN, os.environ))
        results["plain_accuracy_only"].append(timed([*PLAIN, "--accuracy-only"], os.environ))
        results["bare"].append(timed(bare_cmd, bare_env))
        bare_pair.append(timed_pair(bare_cmd, bare_env))
        # lean and its 2-worker runs back to back: their ratios are taken per repeat, so that
        # the machine's drift (up to 20% between minutes on a shared host) hits them alike
        results["lean"].append(sweep(LEAN, template, work)[:2])
        results["full"].append(sweep([], template, work)[:2])
        ours_s, stock_s = launcher_pair(template, work, first_ours=len(results["lean"]) % 2 == 1)
        results["lean_2_workers"].append(ours_s)
        results["lean_2_workers_stock"].append(stock_s)
    median = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    rss = {k: max(r for _, r in v) for k, v in results.items()}
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; "
        f"{N_JOBS}-job KNN grid on the heart data, median of {args.repeats} whole-process runs\n"
    )
    print("| mode | wall s | ms/job | x plain floor | x bare loop | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for mode in results:
        print(
            f"| {mode} | {median[mode]:.1f} | {1000 * median[mode] / N_JOBS:.0f} | "
            f"{median[mode] / median['plain']:.2f} | {median[mode] / median['bare']:.2f} | "
            f"{rss[mode]} |"
        )
    two, stock = median["lean_2_workers"], median["lean_2_workers_stock"]
    pair = statistics.median(bare_pair)
    runs = zip(results["lean_2_workers"], results["lean"], strict=True)
    paired = [two_s / one_s for (two_s, _), (one_s, _) in runs]
    print(
        f"\n2 workers / 1 worker (lean): {statistics.median(paired):.2f}, the median of the "
        f"per-repeat ratios {', '.join(f'{r:.2f}' for r in paired)} "
        f"(ratio of the medians: {two / median['lean']:.2f}; "
        f"the stock joblib launcher: {stock / median['lean']:.2f})"
    )
    print_launchers(results["lean_2_workers"], results["lean_2_workers_stock"])
    print(
        f"Two bare loops at once: {pair:.1f} s against {median['bare']:.1f} s for one, so two "
        f"processes do {2 * median['bare'] / pair:.2f}x the work of one here"
    )
    out = {
        "median_s": median,
        "peak_rss_mb": rss,
        "repeats": args.repeats,
        "bare_pair_s": pair,
        "runs_s": {k: [w for w, _ in v] for k, v in results.items()},
        "two_workers_paired_ratios": paired,
    }
    if not args.skip_flatness:
        out["flatness"] = flat = flatness(template, work)
        print_flatness(flat)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
