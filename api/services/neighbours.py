"""The training images nearest to a synthetic sample, for the reviewer who decides whether a
flagged sample copies a patient: the image nearest in the domain encoder's features and the one
with the highest pixel correlation (``validation.copies``), each with its score and the
near-copy threshold of the cohort's report. Real training images: reviewers and admins only
(the router's dependency)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from synthcohort.api.pixels import image_array
from synthcohort.api.services.cohorts import get_sample, report_data, report_nearest
from synthcohort.core.errors import NotFoundError
from synthcohort.store.datasets import DatasetStore, SplitArrays
from synthcohort.store.db import ApiKey, Cohort

# (space, id key in nearest_train, score key, side of the threshold that flags, threshold key)
_SPACES = (
    ("features", "sample_id", "feature_distance", "at_or_below", "near_copy_feature_distance"),
    ("pixels", "pixel_sample_id", "pixel_correlation", "at_or_above", "near_copy_pixel_correlation"),
)


@lru_cache(maxsize=2)
def _train_split(datasets_root: str, dataset_id: str) -> tuple[SplitArrays, dict[str, int]]:
    """A dataset version's train split and its sample id → row, kept for the next sample of
    the same review (a version never changes once committed)."""
    split = DatasetStore(Path(datasets_root)).get(dataset_id).split("train")
    return split, {sid: i for i, sid in enumerate(split.sample_ids)}


def nearest(session: Session, key: ApiKey, cohort_id: str, index: int) -> dict[str, Any]:
    """``NearestOut`` fields of sample ``index``: its nearest training images with scores."""
    sample = get_sample(session, key, cohort_id, index)
    cohort = session.get(Cohort, sample.cohort_id)
    assert cohort is not None
    near = (sample.scores or {}).get("nearest_train") or report_nearest(cohort.id).get(index)
    if not near:
        raise NotFoundError(f"sample {index} has no nearest training images on record", field="index")
    thresholds = (report_data(cohort.id).get("details") or {}).get("thresholds") or {}
    store = DatasetStore()
    version = store.get(cohort.dataset_id)
    split, rows = _train_split(str(store.root), cohort.dataset_id)
    spacing = tuple(version.meta.spacing) if version.meta.spacing else None
    items = []
    for space, id_key, measure, when, threshold_key in _SPACES:
        sample_id = near.get(id_key)
        if sample_id is None:
            continue
        row = rows.get(str(sample_id))
        if row is None:
            raise NotFoundError(f"training image {sample_id!r} is not in dataset {cohort.dataset_id}", field="index")
        mask = split.masks[row] if split.masks is not None else None
        items.append({"space": space, "sample_id": str(sample_id), "measure": measure, "value": near.get(measure),
                      "threshold": thresholds.get(threshold_key), "near_copy_when": when,
                      "image": image_array(split.images[row], mask, spacing)})
    return {"index": index, "items": items, "outlier_radius": thresholds.get("outlier_radius")}
