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


class _Stopped(Exception):
    """SIGTERM reached `serve` after uvicorn's graceful shutdown."""


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise _Stopped()


def cmd_serve(args: argparse.Namespace) -> int:
    """Upgrade the DB, start a worker (unless --no-worker), serve until interrupted, stop the worker."""
    import uvicorn

    from synthcohort.api.app import create_app
    from synthcohort.core.settings import get_settings
    from synthcohort.store.migrate import upgrade_database

    settings = get_settings()
    upgrade_database()
    worker = None
    if not args.no_worker:
        from synthcohort.workers.process import spawn_worker

        logfile = settings.root / "logs" / "worker.log"
        worker = spawn_worker(queues=settings.worker_queues, logfile=logfile)
        print(f"synthcohort: worker pid {worker.pid}, log {logfile}", file=sys.stderr)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal against the
    # handler that was installed before it ran. With the default SIGTERM handler that kills the
    # process before `finally` could stop the worker; this handler turns it into a normal exit.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.run(create_app(), host=args.host or settings.api_host, port=args.port or settings.api_port,
                    log_level=(args.log_level or settings.log_level).lower())
    except _Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if worker is not None:
            from synthcohort.workers.process import stop_worker

            code = stop_worker(worker)
            print(f"synthcohort: worker stopped (exit {code})", file=sys.stderr)
    return 0
