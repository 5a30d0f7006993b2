"""The Celery app of synthcohort, configured from :func:`synthcohort.settings.get_settings`.

Broker: Redis (or any Celery broker) when ``SYNTHCOHORT_BROKER_URL`` is set, otherwise an
embedded broker — kombu's SQLAlchemy transport on ``<data root>/broker.db`` — so that a fresh
machine runs the whole service with nothing else installed.

Results: no Celery result backend unless ``SYNTHCOHORT_RESULT_BACKEND`` is set explicitly. Job
state, progress, errors and results live in the metadata DB (``store.db.Job`` and the rows a
task writes), which is what the API reads; a result backend would hold a second, weaker copy
and add another writer to the SQLite file.

Delivery guarantees (``task_acks_late`` + ``task_reject_on_worker_lost`` + prefetch 1): a
message is acknowledged only after its task returns, so a worker that dies mid-task leaves
it unacknowledged.

* Redis redelivers an unacknowledged message only after ``visibility_timeout`` seconds,
  checked by a live worker every ``unacked_restore_interval`` seconds. We set it to
  :data:`VISIBILITY_TIMEOUT_S` (30 s; kombu's default is an hour): a SIGKILLed worker's job is
  picked up again about half a minute after it was first delivered. A task that outlives the timeout is *also* redelivered while still running;
  :mod:`workers.lease` makes that harmless (the copy waits for the holder's heartbeat to stop).
* The embedded SQLAlchemy transport never redelivers: it marks a message invisible when
  fetched and only puts back what a worker returns on a clean shutdown. A SIGKILLed worker's
  message is gone, so ``synthcohort worker`` re-enqueues orphaned ``running`` jobs at start
  (:func:`workers.dispatch.recover_orphaned_jobs`); the DB is the source of truth.

Queues: training and sampling go to ``gpu``, import and validation to ``cpu``, so GPU training
and CPU validation can run on different worker pools (``synthcohort worker --queues``).
"""

from __future__ import annotations

from celery import Celery

from synthcohort.core.settings import Settings, get_settings

GPU_QUEUE = "gpu"
CPU_QUEUE = "cpu"
VISIBILITY_TIMEOUT_S = 30
TASK_ROUTES = {
    "synthcohort.import_dataset": {"queue": CPU_QUEUE},
    "synthcohort.train_model": {"queue": GPU_QUEUE},
    "synthcohort.sample_cohort": {"queue": GPU_QUEUE},
    "synthcohort.validate_cohort": {"queue": CPU_QUEUE},
}


def is_embedded_broker(url: str) -> bool:
    return url.startswith(("sqla+", "sqlalchemy+"))


def celery_config(settings: Settings) -> dict:
    """The Celery configuration for ``settings`` (a plain dict, so tests can read it)."""
    broker = settings.celery_broker_url()
    if is_embedded_broker(broker):
        # Options go to sqlalchemy.create_engine; the API and the worker both write the file.
        # (It polls once a second: kombu's virtual-transport default.)
        transport_options: dict = {"connect_args": {"timeout": 30}}
    else:
        transport_options = {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "unacked_restore_interval": 5,  # sweep for expired unacked messages every 5 s
            "unacked_restore_throttle": 1,
        }
    return {
        "broker_url": broker,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "result_backend": settings.result_backend,  # None: job state lives in the DB
        "task_ignore_result": settings.result_backend is None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_routes": TASK_ROUTES,
        "task_default_queue": CPU_QUEUE,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def configure(target: Celery, settings: Settings | None = None) -> Celery:
    """(Re)configure ``target`` from settings; drops pooled connections to an old broker."""
    settings = settings or get_settings()
    conf = celery_config(settings)
    if target.conf.get("broker_url") != conf["broker_url"]:
        # Celery keeps no public way to point a finalized app at another broker: drop the
        # cached connection and producer pools so the next send opens the new URL.
        target._pool = None  # noqa: SLF001
        target.amqp._producer_pool = None  # noqa: SLF001
    target.conf.update(conf)
    return target


def ensure_configured() -> Celery:
    """Called before sending and at worker start: settings may have changed since import
    (tests, the demo); the embedded broker's SQLite file needs its folder."""
    settings = get_settings()
    if is_embedded_broker(settings.celery_broker_url()):
        settings.root.mkdir(parents=True, exist_ok=True)
    return configure(app, settings)


app = Celery("synthcohort", include=["synthcohort.workers.tasks"])
configure(app)
