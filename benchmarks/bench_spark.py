"""Spark MLlib's ALS (local[2]) against the in-process iALS, side by side in one run.

    python benchmarks/bench_spark.py [--ratings PATH] [--events 25000000] [--store PATH]
                                     [--skip-scale]

1. Quality on ml-latest-small: NDCG@10 of both on the same per-user temporal holdout (each
   user's last 20 % of ratings), the Spark version trained through ``flywheel train --engine
   spark`` code (``SparkTrainer``). Target: Spark within 10 % of ours.
2. Scale on a generated store (``bench_scale.generate``, reused when it exists): each engine in
   its own process doing the same stages (snapshot, fit on the training part, holdout
   evaluation, fit on all events); wall time, seconds per stage and the peak resident memory of
   the process tree (Spark's JVM included), sampled from /proc.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RATINGS = ROOT.parent / "shared" / "data" / "ml-latest-small" / "ratings.csv"
MOVIELENS_MAP = "user_id=userId,item_id=movieId,value=rating,timestamp=timestamp"


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        todo.extend(int(child) for child in children)
    return total


def run_measured(args: list[str]) -> tuple[dict[str, Any], float, float]:
    """Run a child, sampling its tree's memory; returns its JSON output, seconds, peak GB."""
    started = time.monotonic()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_bytes(child.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"{args} failed with {child.returncode}")
    return json.loads(out), time.monotonic() - started, peak / 1e9


# -- child processes ---------------------------------------------------------------------------


def child_local(db: str) -> dict[str, Any]:
    """The in-process path, stage by stage: snapshot, holdout fit and score, fit on all."""
    import dataflywheel as dfw
    from dataflywheel.learn.matrix import build_matrix
    from dataflywheel.learn.models import create
    from dataflywheel.learn.snapshot import take_snapshot
    from dataflywheel.learn.trainer import Holdout

    stages: dict[str, float] = {}
    last = time.monotonic()

    def done(name: str) -> None:
        nonlocal last
        now = time.monotonic()
        stages[name] = round(now - last, 3)
        last = now

    with dfw.open(db) as wheel:
        snapshot = take_snapshot(wheel.store, record=False)
        holdout = Holdout.of(snapshot)
        done("snapshot")
        metrics = holdout.evaluate("ials", {}, {})
        done("fit on the training part and holdout evaluation")
        ev = snapshot.events
        matrix = build_matrix(
            ev.user_idx,
            ev.item_idx,
            ev.weight,
            ev.timestamp,
            n_users=snapshot.n_users,
            n_items=snapshot.n_items,
        )
        create("ials").fit(matrix)
        done("fit on all events")
    return {"ndcg@10": metrics["ndcg@10"], "stages_seconds": stages}


def child_spark(db: str, master: str) -> dict[str, Any]:
    import dataflywheel as dfw
    from dataflywheel.learn.spark import SparkTrainer

    with dfw.open(db) as wheel:
        version = SparkTrainer(
            wheel.store, wheel.registry, wheel.settings.artifacts_dir(), master=master
        ).train()
    metrics = version["metrics"]
    return {"ndcg@10": metrics["ndcg@10"], "stages_seconds": metrics["stages_seconds"]}


# -- the comparison ----------------------------------------------------------------------------


def compare(db: str, master: str, title: str) -> dict[str, Any]:
    here = [sys.executable, __file__, "--child"]
    local, local_s, local_gb = run_measured([*here, "local", "--db", db])
    spark, spark_s, spark_gb = run_measured([*here, "spark", "--db", db, "--master", master])
    print(f"\n{title}")
    print(f"{'engine':<22}{'NDCG@10':>9}{'wall s':>9}{'peak GB':>9}")
    print(f"{'in-process iALS':<22}{local['ndcg@10']:>9.4f}{local_s:>9.1f}{local_gb:>9.2f}")
    print(f"{'Spark ALS ' + master:<22}{spark['ndcg@10']:>9.4f}{spark_s:>9.1f}{spark_gb:>9.2f}")
    print(
        f"Spark / ours: NDCG {spark['ndcg@10'] / local['ndcg@10']:.3f} x, "
        f"time {spark_s / local_s:.2f} x, memory {spark_gb / local_gb:.2f} x"
    )
    for name, result in (("in-process", local), ("spark", spark)):
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in result["stages_seconds"].items())
        print(f"  {name} stages: {stages}")
    return {
        "local": {**local, "seconds": local_s, "peak_gb": local_gb},
        "spark": {**spark, "seconds": spark_s, "peak_gb": spark_gb},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=["local", "spark"])
    parser.add_argument("--db")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--ratings", type=Path, default=DEFAULT_RATINGS)
    parser.add_argument("--events", type=int, default=25_000_000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--store", type=Path, default=Path("benchmarks/.data/scale.db"))
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    if args.child:
        result = (
            child_local(args.db) if args.child == "local" else child_spark(args.db, args.master)
        )
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'movielens.db'}"
        subprocess.run(
            [
                str(Path(sys.executable).with_name("flywheel")),
                *("import", "events", str(args.ratings), "--map", MOVIELENS_MAP),
                *("--type", "rating", "--db", db),
            ],
            check=True,
            capture_output=True,
        )
        quality = compare(db, args.master, f"ml-latest-small ({args.ratings})")
    summary: dict[str, Any] = {"movielens": quality}
    if not args.skip_scale:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_scale import generate

        if not args.store.exists():
            print(f"generating {args.events:,} events into {args.store}...", file=sys.stderr)
            generate(args.store, args.events, args.items)
        summary["scale"] = compare(
            f"sqlite:///{args.store}", args.master, f"generated store ({args.store})"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
