"""Thresholds and budgets of the validation stage, in one pydantic model.

The defaults are the service's standard (≥ 0.90 relative FID similarity, ≥ 0.90 Dice ratio,
coverage ≥ 0.9 × real-vs-real, entropy ratio ≥ 0.90); a request may override any of them,
and the report records the values it was judged with. A threshold of 0 turns a gate off
(through the API only an admin may loosen a gate); the report still shows the value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synthcohort.core.errors import InvalidInputError
from synthcohort.core.settings import get_settings
from synthcohort.validation.verdict import DecisionRule

MIN_SAMPLES = 6  # the smallest set the stage can judge: k = 5 neighbours need six points
ClassifierName = Literal["resnet18", "small_cnn", "monai_classifier"]  # validation.classifiers builds them and holds their budgets


RequesterMay = Literal["set", "raise", "lower", "admin"]
"""What a non-admin request may do with a setting (``validation.policy`` enforces it):

- ``set``: anything; a budget or a picture that cannot make a failing cohort pass;
- ``raise`` / ``lower``: only move it the stricter way (a higher pass mark, a lower bar for a flag);
- ``admin``: nothing; it changes the instrument itself (features, k, bins, the random split),
  so its effect on the verdict has no safe direction.
"""


def setting(default: Any, requester: RequesterMay, **field: Any) -> Any:
    """A ``ValidationConfig`` field that declares who may change it. Every field must use this:
    ``tests/test_validation_policy.py`` fails on one that does not. A callable ``default`` is a
    factory (a deployment-wide default read from the settings)."""
    if callable(default):
        return Field(default_factory=default, json_schema_extra={"requester": requester}, **field)
    return Field(default, json_schema_extra={"requester": requester}, **field)


def deployment_decision() -> DecisionRule:
    """``SYNTHCOHORT_VALIDATION_DECISION``: a strict deployment makes ``lower_bound`` everyone's
    default, and a requester then cannot go back to ``point`` (it is looser)."""
    return get_settings().validation_decision


class ValidationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = setting(0, "admin", description="Root seed; every stochastic step derives from it (choosing it "
                                                  "picks the reference split, so a requester may not fish for one).")
    # --- gates -------------------------------------------------------------------------------
    similarity_threshold: float = setting(0.90, "raise", ge=0, description="S_FID pass mark (0 turns the gate off).")
    dice_ratio_threshold: float = setting(0.90, "raise", ge=0, description="DSC_syn / DSC_real pass mark: trained on synthetic vs on real, both on real hold-out (0: off).")
    coverage_ratio_threshold: float = setting(
        0.90, "raise", ge=0, description="coverage(syn) ≥ this × coverage(real vs real) (0: off).")
    entropy_ratio_threshold: float = setting(0.90, "raise", ge=0, description="H_syn / H_real pass mark (0: off).")
    decision: DecisionRule = setting(
        deployment_decision, "raise",
        description="Decision rule (default: the deployment's SYNTHCOHORT_VALIDATION_DECISION, else point). "
                    "point: a gate passes at its value, and one that falls short while its 95 % CI still reaches the "
                    "threshold sends the cohort to a reviewer (not decisive); lower_bound: a gate passes only when its "
                    "CI's lower end reaches the threshold, and fails otherwise.")
    require_utility_gain: bool = setting(
        False, "raise", description="Fail when synthesis does not beat no augmentation on minority recall.")
    # --- statistics ----------------------------------------------------------------------------
    bootstrap: int = setting(200, "set", ge=0, description="Bootstrap resamples for the CIs.")
    kid_subsets: int = setting(50, "set", ge=1)
    kid_subset_size: int = setting(1000, "set", ge=2)
    max_bins: int = setting(20, "admin", ge=2, description="K of the k-means bins test: min(max_bins, N/10).")
    bins_alpha: float = setting(0.05, "raise", gt=0, lt=1,
                                description="Family-wise α (Bonferroni over bins); a smaller α flags less collapse.")
    pr_k: int = setting(3, "admin", ge=1, description="k of precision/recall (Kynkäänniemi et al. 2019).")
    dc_k: int = setting(5, "admin", ge=1, description="k of density/coverage (Naeem et al. 2020).")
    # --- flags ---------------------------------------------------------------------------------
    copy_quantile: float = setting(
        0.01, "raise", gt=0, lt=0.5,
        description="near_copy: closer to a training image than this quantile of hold-out→train distances.")
    copy_max_shift: int = setting(
        3, "admin", ge=0, le=8,
        description="near_copy: pixel correlation at the best alignment within this many pixels (voxels) per axis.")
    copy_flips: bool = setting(True, "admin", description="near_copy: also compare each image mirrored (last axis).")
    outlier_quantile: float = setting(
        1.0, "lower", gt=0.5, le=1.0,
        description="outlier: nearest real farther than this quantile of the real k-NN radii (1.0 = the largest).")
    outlier_k: int = setting(5, "admin", ge=1)
    saturated_fraction: float = setting(0.95, "lower", gt=0, le=1.0,
                                        description="broken: more of the image clipped than this (and than any real one).")
    # --- extractors and budgets ----------------------------------------------------------------
    feature_dim: int = setting(32, "admin", ge=2, description="Width of the domain encoder's features.")
    encoder_epochs: int = setting(8, "admin", ge=1)
    encoder_batch_size: int = setting(64, "admin", ge=2)
    use_inception: bool = setting(True, "set", description="Standard FID when local weights exist.")
    segmenter_epochs: int = setting(40, "admin", ge=1)
    segmenter_batch_size: int = setting(8, "admin", ge=1)
    utility: bool = setting(True, "raise", description="Run the downstream-utility experiment.")
    utility_classifier: ClassifierName = setting(
        "resnet18", "admin", description="The utility protocol's classifier: resnet18 (MedMNIST v2's ResNet-18 for "
        "small inputs, what users train), small_cnn (about 8 × cheaper on a CPU, and weaker) or monai_classifier "
        "(MONAI's Classifier, for 3D on a CPU: about 200 × cheaper than resnet18 at 28³).")
    utility_epochs: int | None = setting(None, "admin", ge=1,
                                         description="Classifier epochs (best val balanced accuracy kept); "
                                                     "default the classifier's recipe (validation.classifiers: resnet18 at "
                                                     "least 600 steps and 8 epochs, small_cnn and monai_classifier 30).")
    utility_seeds: int = setting(1, "set", ge=1)
    utility_batch_size: int | None = setting(None, "admin", ge=2,
                                             description="default the classifier's recipe (resnet18 32, small_cnn and "
                                                         "monai_classifier 64)")
    tsne: bool = setting(True, "set")
    tsne_max_points: int = setting(1000, "set", ge=10)
    nn_chunk_bytes: int = setting(64 * 1024**2, "set", ge=1024,
                                  description="Largest distance block held in memory at once.")
    gallery_max: int = setting(48, "set", ge=0, description="Flagged samples shown in report.html.")

    @classmethod
    def from_json_file(cls, path: str | Path) -> ValidationConfig:
        """Read a JSON config; a wrong field or value names the file and the field."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise InvalidInputError("config file not found", path=path) from exc
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"not valid JSON ({exc.msg} at line {exc.lineno})", path=path) from exc
        return cls.from_dict(data, source=path)

    @classmethod
    def from_dict(cls, data: object, *, source: str | Path | None = None) -> ValidationConfig:
        if not isinstance(data, dict):
            raise InvalidInputError("config must be a JSON object", path=source)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "config"
            raise InvalidInputError(f"{field}: {err['msg']}", path=source, field=None if source else field) from exc
