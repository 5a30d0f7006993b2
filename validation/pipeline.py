"""The validation stage end to end: features → gates → flags → utility → verdict → report.

``validate_cohort`` is what the workers, the API and the CLI call; it reads the sample dir and
the dataset version through the store and hands arrays to ``validate_arrays``, which needs no
store (tests call it with arrays loaded from npz files).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synthcohort.core.errors import InvalidInputError
from synthcohort.core.progress import Progress, ProgressCallback
from synthcohort.core.seeding import derive_seed
from synthcohort.core.version import code_version
from synthcohort.imaging.sample_dir import read_sample_dir
from synthcohort.store.datasets import DatasetStore
from synthcohort.validation import stages
from synthcohort.validation.collapse import tsne_plot
from synthcohort.validation.config import ValidationConfig
from synthcohort.validation.encoder import FeatureExtractor
from synthcohort.validation.explanations import explain
from synthcohort.validation.report import write_report
from synthcohort.validation.stages import RealSplit, SplitLike
from synthcohort.validation.verdict import ValidationReport, decide

__all__ = ["RealSplit", "SplitLike", "validate_arrays", "validate_cohort"]


class _Steps:
    """Progress of the stage as numbered steps; also times each named stage (seconds)."""

    def __init__(self, callback: ProgressCallback | None, total: int):
        self.callback, self.total, self.step = callback, total, 0
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, name: str = "", **metrics: float) -> None:
        now = time.perf_counter()
        self.timings[name or f"step{self.step + 1}"] = round(now - self._t, 4)
        self._t = now
        self.step += 1
        self.beat(**metrics)

    def beat(self, **metrics: float) -> None:
        """A report inside a long step (the utility classifiers' epochs), at the steps done so far:
        the job's row stays current, and a worker's callback can stop the stage there."""
        if self.callback is not None:
            self.callback(Progress("validate", min(self.step, self.total), self.total, dict(metrics)))


def validate_cohort(
    dataset_id: str,
    class_name: str,
    sample_dir: Path,
    out_dir: Path,
    *,
    config: ValidationConfig | None = None,
    provenance: dict | None = None,
    progress: ProgressCallback | None = None,
) -> ValidationReport:
    """Validate the cohort in ``sample_dir`` against dataset version ``dataset_id``; writes
    ``out_dir/report.json``, ``report.html`` and the pictures."""
    dataset = DatasetStore().get(dataset_id)
    meta = dataset.meta
    if class_name not in list(meta.classes):
        raise InvalidInputError(f"unknown class {class_name!r}; the dataset has {list(meta.classes)}", field="class_name")
    samples = read_sample_dir(sample_dir)
    other = sorted({r.get("class", "") for r in samples.rows} - {class_name, ""})
    if other:
        raise InvalidInputError(f"manifest.csv lists classes {other}, not only {class_name!r}", path=Path(sample_dir) / "manifest.csv")
    prov = {"dataset_id": dataset_id, "sample_dir": str(sample_dir)}
    prov.update(provenance or {})
    return validate_arrays(
        dataset.split("train"),
        dataset.split("val"),
        dataset.split("test", purpose="validation"),
        samples.images,
        synthetic_masks=samples.masks,
        sample_files=[r["file"] for r in samples.rows],
        manifest_rows=samples.rows,
        class_index=dataset.class_index(class_name),
        class_names=list(meta.classes),
        out_dir=out_dir,
        config=config,
        provenance=prov,
        progress=progress,
        dataset_key=dataset_id,
    )


def validate_arrays(
    real_train: SplitLike,
    real_val: SplitLike,
    real_test: SplitLike,
    synthetic: np.ndarray,
    *,
    class_index: int,
    class_names: Sequence[str] | None = None,
    synthetic_masks: np.ndarray | None = None,
    sample_files: Sequence[str] | None = None,
    manifest_rows: Sequence[dict[str, str]] | None = None,
    out_dir: Path | None = None,
    config: ValidationConfig | None = None,
    provenance: dict | None = None,
    progress: ProgressCallback | None = None,
    dataset_key: str | None = None,
    encoder: FeatureExtractor | None = None,
) -> ValidationReport:
    """Validate synthetic images of class ``class_index`` against real train/val/test splits.

    Similarity uses the real hold-out (``real_test``) as reference; the encoder, the segmenter
    and every baseline learn from ``real_train`` only; ``real_val`` is used for model selection
    in the utility experiment. With ``out_dir`` the report files are written there.

    Real-vs-real references (S_FID, KID, PRDC, bins) use a seeded reference sample of the class's
    train images that the domain encoder is trained without (``validation.reference``); a given
    ``encoder`` must have been built with ``domain_encoder(..., exclude=reference_indices(...))``
    for the same seed, otherwise the report warns that S_FID is biased towards synthetic data.
    Copy screening still compares against every train image.
    """
    cfg = config or ValidationConfig()
    inp = stages.Inputs.of(real_train, real_val, real_test, synthetic, class_index=class_index,
                           class_names=class_names, synthetic_masks=synthetic_masks, config=cfg)
    found = stages.Findings()
    if synthetic_masks is not None and not inp.masks_used:
        found.warnings.append("synthetic masks given but the dataset has no real masks; Dice gate not computed")
    draw_tsne = out_dir is not None and cfg.tsne
    step = _Steps(progress, 6 + int(inp.masks_used) + int(cfg.utility) + int(draw_tsne))

    feats, f = stages.extract_features(inp, encoder=encoder, dataset_key=dataset_key)
    found.update(f)
    step("features")
    found.update(stages.similarity(inp, feats))
    step("similarity")
    if inp.masks_used:
        found.update(stages.dice(inp, dataset_key=dataset_key))
        step("dice")
    found.update(stages.mode_collapse(inp, feats))
    step("mode_collapse")
    screen, f = stages.copy_screening(inp, feats)
    found.update(f)
    step("copy_screening")
    samples, f = stages.sample_flags(inp, feats, screen, sample_files=sample_files, manifest_rows=manifest_rows)
    found.update(f)
    step("flags")
    if cfg.utility:
        found.update(stages.utility(inp, on_epoch=lambda done, total: step.beat(utility_epochs_done=done,
                                                                                 utility_epochs=total)))
        step("utility")

    decision = decide(found.metrics, samples, cfg.decision)
    decision.hold_every_sample(samples)
    found.details["decision_rule"] = cfg.decision
    found.details["explanation"] = explain(decision.verdict, found.metrics, samples,
                                           found.details.get("utility_saturated"), rule=cfg.decision)
    prov = _provenance(provenance, cfg, inp.class_name, class_index, manifest_rows, found.extractors)
    found.details["timings_s"] = step.timings
    report = ValidationReport(decision.verdict, decision.reasons, found.metrics, samples, found.extractors, prov,
                              found.warnings, found.details)
    if out_dir is not None:
        out_dir = Path(out_dir)
        tsne_path = None
        if draw_tsne:
            tsne_path = tsne_plot(feats.reference, feats.synthetic, out_dir / "tsne.png",
                                  seed=derive_seed(cfg.seed, "tsne") % 2**31, max_points=cfg.tsne_max_points,
                                  title=f"t-SNE, class {inp.class_name}: real reference vs synthetic")
            step("tsne")
        train_masks = np.asarray(inp.real_train.masks) if inp.masks_used else None  # type: ignore[attr-defined]
        write_report(report, out_dir, real_images=inp.tr_x[inp.in_class_train], synthetic=inp.syn,
                     train_images=inp.tr_x, screen=screen, tsne_png=tsne_path, seed=cfg.seed,
                     gallery_max=cfg.gallery_max, synthetic_masks=inp.synthetic_masks, train_masks=train_masks,
                     real_masks=None if train_masks is None else train_masks[inp.in_class_train])
        report.out_dir = str(out_dir)
    step("report")
    return report


def _provenance(user: dict | None, cfg: ValidationConfig, class_name: str, class_index: int,
                rows: Sequence[dict[str, str]] | None, extractors: list[dict[str, str]]) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "class_name": class_name,
        "class_index": class_index,
        "seeds": {"validation": cfg.seed},
        "extractors": extractors,
        "code_version": code_version(),
        "config": cfg.model_dump(),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if rows:
        prov["model_ids"] = sorted({r.get("model_id", "") for r in rows} - {""})
        prov["seeds"]["sampling"] = sorted({r.get("seed", "") for r in rows} - {""})
    prov.update(user or {})
    return prov
