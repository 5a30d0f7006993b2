"""Latency of the status and list endpoints under a steady open-loop load (issue 20, finding 8).

``python -m benchmarks.api_load [--rate 200] [--seconds 30]`` makes a throw-away data root
(SQLite, embedded broker, one requester key, a job and a few cohorts of theirs), starts a real
uvicorn in a child process on loopback, and sends ``--rate`` requests per second for
``--seconds``, round robin over GET /v1/jobs/{id}, GET /v1/cohorts, GET /v1/health and a plain
FastAPI endpoint mounted on the same server (``/bench/plain``: no auth, no DB) — the reference
measured in the same run. Requests are sent on schedule whether or not earlier ones have
answered (open loop), so a slow server shows as latency, not as a lower rate. Prints p50/p99 per
endpoint and their ratio to the plain endpoint. Target: p99 < 50 ms on 2 idle cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_app():  # noqa: ANN201 - uvicorn --factory target
    """The synthcohort app plus the plain reference endpoint (imported by the server process)."""
    from synthcohort.api.app import create_app

    app = create_app()

    @app.get("/bench/plain", include_in_schema=False)
    def plain() -> dict:
        return {"ok": True}

    return app


def seed_root(home: Path) -> tuple[str, str]:
    """A requester key and one of their jobs (plus cohorts to list), in a fresh data root."""
    os.environ["SYNTHCOHORT_HOME"] = str(home)
    from synthcohort.api.keys import create_api_key
    from synthcohort.core.settings import get_settings
    from synthcohort.store.db import (
        Cohort,
        CohortStatus,
        DatasetRecord,
        Job,
        JobKind,
        JobStatus,
        Role,
        session_factory,
    )
    from synthcohort.store.migrate import upgrade_database

    get_settings.cache_clear()
    upgrade_database()
    with session_factory()() as s:
        key_row, key = create_api_key(s, Role.requester, "bench")
        s.add(DatasetRecord(id="ds-bench", name="bench", modality="other", spatial_dims=2, classes=["x"],
                            counts={}, meta={}, owner_id=key_row.id))
        s.flush()
        for i in range(20):
            job = Job(id=f"job-bench{i:04d}", kind=JobKind.cohort, status=JobStatus.running, owner_id=key_row.id,
                      stage="train", percent=42.0, request={}, target_id=f"coh-bench{i:04d}")
            s.add(job)
            s.flush()
            s.add(Cohort(id=f"coh-bench{i:04d}", dataset_id="ds-bench", class_name="x", generator="wgan-gp",
                         count=16, seed=i, format="png", status=CohortStatus.queued, job_id=job.id,
                         owner_id=key_row.id))
        s.commit()
    return key, "job-bench0000"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def load(url: str, key: str, paths: list[str], rate: float, seconds: float) -> dict[str, list[float]]:
    import httpx

    latencies: dict[str, list[float]] = {p: [] for p in paths}
    errors: dict[str, int] = {p: 0 for p in paths}
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, limits=limits, timeout=30) as client:
        async def one(path: str) -> None:
            t0 = time.perf_counter()
            try:
                r = await client.get(path)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies[path].append(time.perf_counter() - t0)
            else:
                errors[path] += 1

        for path in paths:  # warm up connections and caches
            await one(path)
        for v in latencies.values():
            v.clear()
        tasks, start, n = [], time.perf_counter(), int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(paths[i % len(paths)])))
        await asyncio.gather(*tasks)
    for path, count in errors.items():
        if count:
            print(f"  {path}: {count} failed requests")
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second, all endpoints together")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="api-load-") as tmp:
        key, job_id = seed_root(Path(tmp))
        env = {**os.environ, "SYNTHCOHORT_HOME": tmp, "PYTHONPATH": str(REPO)}
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "benchmarks.api_load:make_app",
                                   "--host", "127.0.0.1", "--port", str(args.port), "--log-level", "warning"],
                                  cwd=REPO, env=env)
        try:
            import httpx

            url = f"http://127.0.0.1:{args.port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{url}/bench/plain", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the server did not start") from None
                    time.sleep(0.2)
            paths = [f"/v1/jobs/{job_id}", "/v1/cohorts", "/v1/health", "/bench/plain"]
            print(f"{args.rate:.0f} requests/s for {args.seconds:.0f} s, round robin over {len(paths)} endpoints "
                  f"(uvicorn, loopback, {os.cpu_count()} CPUs)")
            lat = asyncio.run(load(url, key, paths, args.rate, args.seconds))
        finally:
            server.terminate()
            server.wait(20)
    ref50, ref99 = percentile(lat["/bench/plain"], 0.5), percentile(lat["/bench/plain"], 0.99)
    print(f"{'endpoint':<28}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'p50/plain':>11}{'p99/plain':>11}")
    for path, values in lat.items():
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(f"{path:<28}{len(values):>6}{p50 * 1e3:>9.1f}{p99 * 1e3:>9.1f}{p50 / ref50:>11.2f}{p99 / ref99:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
