"""`synthcohort demo`: the whole service on generated phantom images, in a few minutes on a CPU.

It goes through the real service path, as a user's scripts would: start the REST API (uvicorn
in a thread) and one worker process (embedded broker unless ``SYNTHCOHORT_BROKER_URL`` is set),
make an API key, upload the phantom data set (:mod:`imaging.phantoms`, as a MedMNIST-style
``.npz``) through ``POST /v1/datasets``, ask for a cohort of the minority class ``lesion``
(which trains a small generator first), follow the job's progress, then print the verdict, the
counts of released and held samples, where the HTML report and the downloaded archive are, and
the address of the cohort's review page (``/ui/cohorts/<id>``; it stays up with ``--keep``), and
the wall time of each stage of the cohort job and of the whole demo.
The API and the worker are stopped on exit, on errors and on Ctrl-C (which also cancels the job).
"""

from __future__ import annotations

import argparse
import io
import secrets
import time
from typing import Any

import numpy as np

from synthcohort.core import layout
from synthcohort.core.errors import SynthcohortError
from synthcohort.core.progress import Progress
from synthcohort.core.settings import get_settings
from synthcohort.validation.verdict import metric_lines

DEMO_CLASS = "lesion"
# Narrower networks than the families' defaults, so that a few hundred steps fit in minutes on a
# CPU; other families train with their defaults.
# Measured on the demo's phantoms (1 thread): S_FID of this WGAN-GP still rises at 1600 steps (seed 1: 0.53,
# 0.66, 0.73 at 800, 1200, 1600; seed 2: 0.32, 0.42, 0.53), about 190 s of one core; the whole default demo
# gave 0.69, 0.68, 0.68 (seeds 0, 1, 2). None of it reaches 0.90: see README "Try it" and benchmarks/demo_ceiling.py.
DEMO_STEPS = 1600
DEMO_CONFIG = {"wgan-gp": {"batch_size": 16, "g_channels": 16, "d_channels": 16, "max_channels": 32,
                           "n_critic": 2, "z_dim": 32, "embed_dim": 16}}
# The utility test on the small CNN: the default ResNet-18 would take the demo's validation from about
# a minute to half an hour on two CPU cores (8 arms × 600 steps). The gates do not depend on it.
DEMO_VALIDATION = {"utility_classifier": "small_cnn"}


class DemoError(SynthcohortError):
    """A step of the demo did not work (the message says which and why)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole service on generated phantoms: import, train, "
                       "generate, validate, download")
    p.add_argument("--generator", default="wgan-gp", help="generator family (default wgan-gp)")
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"training steps (default {DEMO_STEPS})")
    p.add_argument("--count", type=int, default=64, help="synthetic samples in the cohort (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true",
                   help="keep the API and the worker running after the demo (until Ctrl-C)")
    p.set_defaults(func=run_demo)


def phantom_npz(seed: int = 0) -> bytes:
    """The 2D phantom data set as a MedMNIST-style .npz (uint8 images, (N, 1) labels)."""
    from synthcohort.imaging.phantoms import make_phantoms

    arrays: dict[str, np.ndarray] = {}
    for split, ph in make_phantoms(2, seed=seed).items():
        arrays[f"{split}_images"] = np.round(ph.images[:, 0] * 255).astype(np.uint8)
        arrays[f"{split}_labels"] = ph.labels.reshape(-1, 1).astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


class JobBar:
    """A progress callback for :meth:`synthcohort.client.Client.wait`: one tqdm bar with the
    job's percent, stage and the worker's ETA."""

    def __init__(self, label: str):
        from tqdm import tqdm

        self.bar = tqdm(total=100, desc=label, unit="%", dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}|{postfix}")
        self.started: dict[str, float] = {}  # stage → when a poll first saw it (monotonic)
        self.ended: float | None = None

    def __call__(self, p: Progress) -> None:
        self.started.setdefault(p.stage, time.monotonic())
        self.bar.n = min(100, max(0, p.step))
        eta = f", ETA {p.eta_s:.0f} s" if p.eta_s is not None else ""
        loss = {k: v for k, v in p.metrics.items() if k.startswith("loss")}
        losses = "".join(f", {k} {v:.3g}" for k, v in list(loss.items())[:2])
        self.bar.set_postfix_str(f"{p.stage}{eta}{losses}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.ended = time.monotonic()
        self.bar.close()

    def stage_seconds(self) -> dict[str, float]:
        """Wall seconds of each stage the polls saw, in order (to within the poll interval; a stage
        shorter than a poll may be missed); the finished job's ``done`` is not a stage."""
        marks = sorted(self.started.items(), key=lambda kv: kv[1]) + [("", self.ended or time.monotonic())]
        return {stage: t1 - t0 for (stage, t0), (_, t1) in zip(marks, marks[1:]) if stage != "done"}


def wait(client: Any, job_id: str, label: str, times: dict[str, float] | None = None) -> dict[str, Any]:
    """Follow the job with a progress bar; ``times`` gets the wall seconds of each of its stages."""
    bar = JobBar(label)
    try:
        return client.wait(job_id, poll=1.0, progress=bar)
    finally:
        bar.close()
        if times is not None:
            times.update(bar.stage_seconds())


def run_demo(args: argparse.Namespace) -> int:
    from synthcohort.api.app import create_app
    from synthcohort.api.keys import create_api_key
    from synthcohort.client import Client
    from synthcohort.core.atomic import atomic_write_bytes
    from synthcohort.core.signals import signals_raise
    from synthcohort.store.db import Role, session_factory
    from synthcohort.store.migrate import upgrade_database
    from synthcohort.validation.config import MIN_SAMPLES
    from synthcohort.workers.celery_app import ensure_configured
    from synthcohort.workers.process import (
        ApiThread,
        spawn_worker,
        stop_worker,
        wait_worker_ready,
    )

    if args.steps < 1:
        raise DemoError("must be at least 1", field="--steps")
    if args.count < MIN_SAMPLES:
        raise DemoError(f"must be at least {MIN_SAMPLES} (validation needs that many)", field="--count")
    began = time.monotonic()
    settings = get_settings()
    root = settings.root
    out_dir = root / "demo"
    broker = settings.celery_broker_url()
    print(f"data root {root}\nbroker    {_safe(broker)}\ndatabase  {_safe(settings.sqlalchemy_url())}", flush=True)

    upgrade_database()
    ensure_configured()
    with session_factory()() as s:
        _, key = create_api_key(s, Role.admin, f"demo-{secrets.token_hex(3)}")
    npz = out_dir / f"phantoms-2d-seed{args.seed}.npz"
    atomic_write_bytes(npz, phantom_npz(args.seed))

    # SIGTERM (a timeout, a service manager) and SIGINT unwind like Ctrl-C: the job is cancelled and
    # `finally` stops the worker, which would otherwise train on as an orphan.
    with signals_raise():
        worker_log = out_dir / "worker.log"
        api = ApiThread(create_app()).start()
        worker = None
        client = Client(api.url, key, timeout=120.0)
        job_id: str | None = None
        try:
            print(f"API       {api.url}  (admin key {key[:12]}…)", flush=True)
            worker = spawn_worker(settings.worker_queues, env=None, logfile=worker_log)
            print(f"worker    pid {worker.pid}, log {worker_log}", flush=True)
            wait_worker_ready(worker, worker_log)

            print("1/3 upload the phantom data set (2D, 32×32, classes normal and lesion, 5:1)", flush=True)
            job_id = client.upload_dataset(npz, name=f"phantom-2d-seed{args.seed}", format="medmnist",
                                           modality="other", classes=["normal", "lesion"])["job_id"]
            dataset_id = wait(client, job_id, "import")["target_id"]
            print(f"    dataset {dataset_id}", flush=True)

            print(f"2/3 train {args.generator} for {args.steps} steps on '{DEMO_CLASS}', generate {args.count}, "
                  "validate", flush=True)
            cohort = client.request_cohort(dataset_id=dataset_id, class_name=DEMO_CLASS, generator=args.generator,
                                           train_steps=args.steps, count=args.count, seed=args.seed, format="png",
                                           config=DEMO_CONFIG.get(args.generator), validation=DEMO_VALIDATION)
            job_id = cohort["job_id"]
            stages: dict[str, float] = {}
            wait(client, job_id, "cohort", stages)
            job_id = None
            cohort = client.cohort(cohort["id"])
            report = layout.cohort_report_dir(cohort["id"]) / layout.REPORT_HTML
            print()
            print(f"cohort    {cohort['id']}  (model {cohort['model_id']})")
            print(f"verdict   {cohort['verdict']}")
            for reason in cohort.get("reasons") or []:
                print(f"          - {reason}")
            for line in metric_lines(cohort.get("metrics") or {}):
                print(f"          {line}")
            held = "withheld (cohort failed)" if cohort["verdict"] == "failed" else "held for review"
            print(f"samples   {cohort['released']} released, {cohort['held']} {held}, "
                  f"{cohort['rejected']} rejected (of {cohort['count']})")
            print(f"report    {report}")
            print(f"page      {review_page(api.url, cohort['id'])}")
            if not args.keep:
                print(f"          (open it while the API runs: rerun with --keep, or `synthcohort serve` and "
                      f"{review_page(f'http://{settings.api_host}:{settings.api_port}', cohort['id'])})")
            if cohort["released"]:
                print("3/3 download the released samples", flush=True)
                folder = client.download(cohort["id"], out_dir, format="png", archive="zip")
                print(f"download  {folder}  ({cohort['released']} samples, SHA256SUMS checked)")
            else:
                why = "(the cohort failed validation)" if cohort["verdict"] == "failed" else "until a reviewer approves"
                print("download  nothing: no sample is released " + why)
                if cohort["verdict"] == "failed":
                    print("          A few minutes of CPU training rarely reach the 0.90 standard; the gate held the "
                          "cohort back, as it should. Train longer (--steps), on a GPU, or see report.html.")
            print(f"time      {stage_times(stages)}; the whole demo {_minutes(time.monotonic() - began)}", flush=True)
            if args.keep:
                print(f"\nThe API ({api.url}) and the worker keep running; key {key}. Open the page above and sign "
                      "in with that key. Ctrl-C stops them.", flush=True)
                while worker.poll() is None:
                    time.sleep(1.0)
            return 0
        except (KeyboardInterrupt, SystemExit):
            if job_id is not None:
                try:
                    client.cancel(job_id)
                    print(f"\ncancelled job {job_id}")
                except SynthcohortError:
                    pass
            raise
        finally:
            client.close()
            if worker is not None:
                stop_worker(worker)
            api.stop()


def stage_times(seconds: dict[str, float]) -> str:
    """"train 212 s, sample 3 s, validate 95 s": the cohort job's stages as the demo saw them."""
    return ", ".join(f"{stage} {sec:.0f} s" for stage, sec in seconds.items()) or "no stage seen"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def review_page(api_url: str, cohort_id: str) -> str:
    """The address of a cohort's review page on the API at ``api_url``."""
    return f"{api_url.rstrip('/')}/ui/cohorts/{cohort_id}"


def _safe(url: str) -> str:
    """A URL without its password, for printing."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy URL (redis://)
        return url.split("@")[-1]
