"""`synthcohort worker`: a Celery worker for the job pipeline."""

from __future__ import annotations

import argparse
import logging
import os

from synthcohort.core.settings import get_settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run a worker that executes import/train/sample/validate jobs")
    p.add_argument("--queues", default=None,
                   help="comma-separated queues: gpu (train, sample), cpu (import, validate); "
                   "default SYNTHCOHORT_WORKER_QUEUES or gpu,cpu")
    p.add_argument("--concurrency", type=int, default=1,
                   help="tasks at once; 1 uses the solo pool (one process), more use prefork")
    p.add_argument("--loglevel", default="info")
    p.set_defaults(func=run_worker)


def prepare_database() -> None:
    """Bring the metadata DB to the current schema before taking work."""
    from synthcohort.store.migrate import upgrade_database

    upgrade_database()


def run_worker(args: argparse.Namespace) -> int:
    from synthcohort.core.errors import InvalidInputError
    from synthcohort.workers.celery_app import app, ensure_configured
    from synthcohort.workers.dispatch import recover_orphaned_jobs
    from synthcohort.workers.health import WorkerBeat
    from synthcohort.workers.parent import watch_parent

    watch_parent()  # first: a worker whose spawner died before it got here stops too
    logging.getLogger().setLevel(args.loglevel.upper())
    queues = args.queues or get_settings().worker_queues
    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not names or any(q not in ("gpu", "cpu") for q in names):
        raise InvalidInputError(f"queues must be gpu and/or cpu, got {queues!r}", field="--queues")
    if args.concurrency < 1:
        raise InvalidInputError("must be at least 1", field="--concurrency")
    prepare_database()
    ensure_configured()
    recovered = recover_orphaned_jobs()
    if recovered:
        print(f"synthcohort worker: re-sent {len(recovered)} job(s) left running: {', '.join(recovered)}", flush=True)
    argv = ["worker", "-Q", ",".join(names), "--concurrency", str(args.concurrency),
            "--pool", "solo" if args.concurrency == 1 else "prefork", "--loglevel", args.loglevel,
            "--hostname", f"synthcohort-{os.getpid()}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    beat = WorkerBeat(names, concurrency=args.concurrency).start()  # /v1/health counts it; it also takes over stages of dead workers
    try:
        app.worker_main(argv)
    finally:
        beat.stop()
    return 0
