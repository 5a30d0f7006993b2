"""``synthcohort serve`` (the API, plus one worker unless --no-worker) and ``synthcohort keys``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from synthcohort.store.db import Role

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run the REST API (and one worker)")
    serve.add_argument("--host", default=None, help="bind address (default SYNTHCOHORT_API_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (default SYNTHCOHORT_API_PORT)")
    serve.add_argument("--no-worker", action="store_true", help="do not start a worker process")
    serve.add_argument("--log-level", default=None, help="uvicorn log level (default SYNTHCOHORT_LOG_LEVEL)")
    serve.set_defaults(func=cmd_serve)

    keys = subparsers.add_parser("keys", help="API keys: create, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = keys_sub.add_parser("create", help="make a key; prints it once on stdout")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", default=None, help="who or what holds the key (default: the role)")
    create.set_defaults(func=cmd_keys_create)
    lst = keys_sub.add_parser("list", help="keys (prefix, role, name; never the key)")
    lst.set_defaults(func=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_keys_revoke)


def _session():
    from synthcohort.store.db import session_factory
    from synthcohort.store.migrate import upgrade_database

    upgrade_database()
    return session_factory()()


def cmd_keys_create(args: argparse.Namespace) -> int:
    from synthcohort.api.keys import create_api_key

    with _session() as session:
        _row, plain = create_api_key(session, args.role, args.name or args.role)
    print(plain)  # the only thing on stdout, so `KEY=$(synthcohort keys create ...)` works
    return 0


def cmd_keys_list(_args: argparse.Namespace) -> int:
    from synthcohort.api.keys import list_api_keys

    with _session() as session:
        for k in list_api_keys(session):
            state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
            print(f"{k.id}\t{k.prefix}…\t{k.role.value}\t{state}\t{k.name}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from synthcohort.api.keys import revoke_api_key

    with _session() as session:
        row = revoke_api_key(session, args.id)
    print(f"revoked key {row.id} ({row.prefix}…, {row.name})", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Upgrade the DB, start a supervised worker (unless --no-worker), serve until SIGTERM or
    SIGINT, then stop the worker: no child outlives ``serve``."""
    import uvicorn

    from synthcohort.api.app import create_app
    from synthcohort.core.settings import get_settings
    from synthcohort.core.signals import signals_raise
    from synthcohort.store.migrate import upgrade_database

    settings = get_settings()
    upgrade_database()
    supervisor = None
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal against the
    # handler installed before it ran: signals_raise turns it into SystemExit, so `finally` stops
    # the worker (also when the signal comes before uvicorn runs, or after it stopped).
    with signals_raise():
        try:
            if not args.no_worker:
                from synthcohort.workers.supervisor import WorkerSupervisor

                logfile = settings.root / "logs" / "worker.log"

                def started(proc, restarts: int) -> None:
                    again = f" (restart {restarts})" if restarts else ""
                    print(f"synthcohort: worker pid {proc.pid}{again}, log {logfile}", file=sys.stderr, flush=True)

                supervisor = WorkerSupervisor(queues=settings.worker_queues, logfile=logfile, on_start=started).start()
            uvicorn.run(create_app(), host=args.host or settings.api_host, port=args.port or settings.api_port,
                        log_level=(args.log_level or settings.log_level).lower())
        except SystemExit as exc:
            if exc.code not in (128 + signal.SIGTERM, 128 + signal.SIGINT):
                raise
        finally:
            if supervisor is not None:
                code = supervisor.stop()
                print(f"synthcohort: worker stopped (exit {code})", file=sys.stderr, flush=True)
    return 0
