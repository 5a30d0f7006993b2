"""`synthcohort worker`: a Celery worker for the job pipeline."""

from __future__ import annotations

import argparse
import os
import logging

from synthcohort.settings import get_settings

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
    try:
        from store.migrate import upgrade_database
    except ModuleNotFoundError as exc:  # migrations not written yet: plain create_all
        if exc.name != "store.migrate":
            raise
        from store.db import Base, engine_for

        Base.metadata.create_all(engine_for(get_settings().sqlalchemy_url()))
        return
    upgrade_database()


def run_worker(args: argparse.Namespace) -> int:
    from synthcohort.errors import InvalidInputError
    from workers.celery_app import app, ensure_configured
    from workers.dispatch import recover_orphaned_jobs

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
    app.worker_main(argv)
    return 0
