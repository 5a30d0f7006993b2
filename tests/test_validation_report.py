"""report.html stays self-contained and says what the review page says: the verdict in plain
words with what to do next, the gates before the informational metrics, a caption under every
picture, larger pictures, a note when the utility test is saturated, and "withheld (cohort
failed)" instead of "held for review" for the samples of a failed cohort."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from synthcohort.validation.copies import CopyScreen
from synthcohort.validation.explanations import PICTURE_CAPTIONS, explain, saturated_utility
from synthcohort.validation.report import grid, render_html
from synthcohort.validation.verdict import FAILED, NEEDS_REVIEW, ValidationReport, gate, info

N = 6


def utility_table(score: float) -> dict:
    arms = ("none", "weighted_loss", "random_oversampling", "smote", "augmentation", "synthetic")
    return {a: {"values": {"minority_recall": score, "balanced_accuracy": score, "auroc": score},
                "ci": {"minority_recall": None, "balanced_accuracy": None, "auroc": None}, "n_added": 10}
            for a in arms}


def make_report(verdict: str, score: float = 1.0) -> tuple[ValidationReport, np.ndarray]:
    rng = np.random.default_rng(0)
    synthetic = rng.random((N, 1, 28, 28), dtype=np.float32)
    s_fid = gate(0.42 if verdict == FAILED else 0.95, 0.9, ci=(0.3, 0.5), label="FD ratio")
    metrics = {"s_fid": s_fid, "kid_synthetic": info(0.01, label="KID"), "coverage_ratio": gate(0.97, 0.9)}
    samples = [{"index": i, "file": f"images/{i:06d}.png",
                "flags": [{"kind": "outlier", "reason": "far away", "score": 2.0}] if i < 2 else [],
                "nearest_train": {"sample_id": f"train-{i}", "pixel_sample_id": f"train-{i}"}} for i in range(N)]
    util = utility_table(score)
    details = {"utility": util, "utility_saturated": saturated_utility(util)}
    details["explanation"] = explain(verdict, metrics, samples, details["utility_saturated"])
    return ValidationReport(verdict, ["s_fid below"], metrics, samples, [], {"class_name": "malignant"}, [],
                            details), synthetic


def render(report: ValidationReport, synthetic: np.ndarray) -> str:
    from synthcohort.imaging.sample_files import encode_png

    screen = CopyScreen(np.arange(N), np.ones(N), np.arange(N), np.zeros(N), 0.1, 0.99, np.zeros(N, bool),
                        np.ones(N, bool))
    pictures = {"grid_real.png": encode_png(grid(synthetic), 3), "grid_synthetic.png": encode_png(grid(synthetic), 3)}
    return render_html(report, pictures, synthetic, synthetic, screen, None, gallery_max=10)


def test_failed_cohort_reads_withheld_and_says_what_to_do() -> None:
    html = render(*make_report(FAILED))
    assert "withheld (cohort failed)" in html and "held for review" not in html
    assert "Failed: the cohort missed 1 of 2 gates" in html
    assert "Similarity to real images: 0.42 (95 % CI 0.3–0.5), below the pass mark 0.9" in html
    assert "What to do next" in html and "Train longer" in html
    assert not re.search(r'(src|href)="(?!data:)', html)  # still self-contained


def test_needs_review_cohort_reads_held_for_review() -> None:
    html = render(*make_report(NEEDS_REVIEW))
    assert "held for review" in html and "withheld" not in html
    assert "Needs review: the cohort met every gate, but 2 of 6 samples were flagged" in html


def test_gates_first_informational_folded_and_captions_under_pictures() -> None:
    report, synthetic = make_report(NEEDS_REVIEW)
    report.metrics["entropy_ratio"] = gate(0.5, 0.0)
    html = render(report, synthetic)
    assert '<code>entropy_ratio</code></td><td>0.5</td><td>—</td><td>≥ 0</td><td class="muted">off</td>' in html
    gated_at, details_at = html.index("<code>s_fid</code>"), html.index("<details><summary>Informational metrics")
    assert gated_at < details_at < html.index("<code>kid_synthetic</code>")
    for name in ("grid_real.png", "grid_synthetic.png"):
        assert f"<figcaption>{PICTURE_CAPTIONS[name]}</figcaption>" in html


def test_flagged_pairs_are_drawn_large_without_smoothing() -> None:
    html = render(*make_report(NEEDS_REVIEW))
    card = html[html.index('class="card"'):]
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', card).group(1))
    im = Image.open(io.BytesIO(png))
    assert im.height >= 160  # 28 px enlarged 6× (was 3×: about 30 px in the issue)
    assert "image-rendering:pixelated" in html


@pytest.mark.parametrize(("recall", "saturated"), [(1.0, True), (0.75, False)])
def test_saturated_utility_is_said(recall: float, saturated: bool) -> None:
    report, synthetic = make_report(NEEDS_REVIEW, recall)
    html = render(report, synthetic)
    assert ("Saturated: every arm reaches 1.0" in html) is saturated
    expected = ["auroc", "balanced_accuracy", "minority_recall"] if saturated else []
    assert report.details["utility_saturated"] == expected
    assert any("utility test is saturated" in r for r in report.details["explanation"]["reasons"]) is saturated


def test_saturation_needs_every_arm_at_the_ceiling() -> None:
    table = utility_table(1.0)
    table["none"]["values"]["auroc"] = 0.99
    assert saturated_utility(table) == ["balanced_accuracy", "minority_recall"]
    table["smote"]["values"]["minority_recall"] = None
    assert saturated_utility(table) == ["balanced_accuracy"]
    assert saturated_utility({}) == []


def test_gates_turned_off_are_said_not_claimed_as_met() -> None:
    samples = [{"index": 0, "flags": [{"kind": "outlier"}]}, {"index": 1, "flags": []}]
    off = {"s_fid": gate(0.3, 0.0), "coverage_ratio": gate(0.2, 0.0)}
    assert explain(NEEDS_REVIEW, off, samples)["summary"].startswith(
        "Needs review: no gate was on for this cohort (all were turned off), but 1 of 2 samples")
    some = {"s_fid": gate(0.95, 0.9), "coverage_ratio": gate(0.2, 0.0)}
    text = explain(NEEDS_REVIEW, some, samples)
    assert text["gates"]["coverage_ratio"]["title"] == "Variety"
    assert "met every gate that was on (1 of 2 were turned off)" in text["summary"]
    assert "Variety: 0.2 (this gate was turned off for the cohort)." in text["reasons"]
