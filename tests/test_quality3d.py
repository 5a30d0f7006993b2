"""benchmarks/quality3d.py end to end at a small scale on real hippocampus volumes: the output has
its split, cohort, control and segmentation figures, and the acceptance's control holds through
``validate_cohort`` (real pairs pass the Dice gate, the same volumes with shuffled masks fail)."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.quality3d import (
    Hippocampus,
    augmented_masks,
    derangement,
    evaluate_hippocampus_cohort,
    markdown_table,
    parser,
    real_arm,
    run_adrenal,
    run_hippocampus,
)
from synthcohort.validation.config import ValidationConfig

pytestmark = pytest.mark.shared_data

BUDGET = dict(segmenter_epochs=20, segmenter_batch_size=4, encoder_epochs=2, bootstrap=50, kid_subsets=5, tsne=False)
TINY = dict(batch_size=2, g_channels=4, d_channels=4, z_dim=8, embed_dim=4, n_critic=1)


def test_derangement_and_augmented_masks_are_seeded_and_new() -> None:
    perm = derangement(9, seed=3)
    assert sorted(perm) == list(range(9)) and not (perm == np.arange(9)).any()
    assert (perm == derangement(9, seed=3)).all()
    masks = np.zeros((3, 1, 16, 24, 16), np.uint8)
    masks[:, :, 5:11, 8:16, 5:11] = 1
    new, src = augmented_masks(masks, 5, seed=0)
    again, _ = augmented_masks(masks, 5, seed=0)
    assert new.shape == (5, 1, 16, 24, 16) and (new == again).all() and src.min() >= 0 and src.max() < 3
    assert all(m.any() and not (m == masks[0]).all() for m in new)  # deformed, never emptied


def test_benchmark_end_to_end_and_shuffled_masks_fail(hippocampus_subset, tmp_path) -> None:
    source = hippocampus_subset(32)
    args = parser().parse_args([
        "--families", "wgan-gp", "--seeds", "0", "--steps", "1", "--new-masks", "4", "--size", "16x24x16",
        "--val", "0.25", "--test", "0.25", "--validation", json.dumps(BUDGET), "--config", json.dumps({"wgan-gp": TINY}),
        "--models-dir", str(tmp_path / "models")])
    torch.set_num_threads(1)
    out = run_hippocampus(["wgan-gp"], args, torch.device("cpu"), tmp_path / "out", source=source)

    split = out["split"]
    ids = [set(split[s]) for s in ("train", "val", "test")]
    assert sum(map(len, ids)) == 32 and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    row = out["families"]["wgan-gp"]["0"]
    assert row["steps"] == 1 and len(row["new_mask_sources"]) == 4
    for key in ("dice_ratio", "s_fid", "coverage_ratio", "kid_synthetic", "authenticity", "flagged", "shuffled_control"):
        assert key in row, key
    seg = row["segmentation"]
    assert 0 <= seg["dsc_real"] <= 1 and seg["tstr_ratio"]["ci"][0] <= seg["tstr_ratio"]["ci"][1]
    assert seg["gain"]["value"] == pytest.approx(seg["dsc_real_plus_synthetic"] - seg["dsc_real"])
    assert "| wgan-gp | 1 | 1 |" in markdown_table(out, None)

    # The cohort's report is a 3D report: slices, spread, and each flagged sample beside its
    # nearest training volume (a 1-step generator draws noise, which the stage flags).
    report = tmp_path / "out" / "hippocampus-wgan-gp-seed0" / "cohort" / "report"
    html = (report / "report.html").read_text()
    for name in ("ortho_real.png", "ortho_synthetic.png", "spread.png"):
        im = Image.open(report / name)
        assert im.format == "PNG" and im.width >= 300 and im.height >= 200, (name, im.size)
        assert f'data-picture="{name}"' in html
        assert name in json.loads((report / "report.json").read_text())["details"]["pictures"]
    assert row["n_flagged"] > 0
    card = html[html.index('class="card"'):]
    pair = Image.open(io.BytesIO(base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', card).group(1))))
    assert pair.height >= 250 and pair.width > pair.height  # two rows of three slices
    assert "nearest training volume, three orthogonal slices" in html

    # The acceptance's control on real pairs: held-out real volumes with their own masks pass the
    # Dice gate through validate_cohort; the same volumes with their masks permuted fail it.
    real = Hippocampus.load(source, split_seed=0, val=0.25, test=0.25, size=(16, 24, 16))
    assert real.dataset.id == split["dataset_id"]
    val = real.dataset.split("val")
    cfg = ValidationConfig(utility=False, **BUDGET)
    good = evaluate_hippocampus_cohort(real, val.images, val.masks, tmp_path / "real", cfg=cfg,
                                       real_dice=real_arm(real, cfg), seed=0, model_id="real-pairs")
    assert good["dice_ratio"]["passed"] is True, good["dice_ratio"]
    bad = good["shuffled_control"]
    assert good["control_failed"] and bad["dice_ratio"]["passed"] is False and bad["verdict"] != "passed", bad
    assert bad["dice_ratio"]["value"] < 0.9 and bad["dsc_real"] == pytest.approx(good["dsc_real"])


def test_adrenal_row_cuts_the_minority_and_scores_against_random_oversampling(shared_data, tmp_path) -> None:
    """The adrenal row on a small subset of AdrenalMNIST3D: hyperplasia cut to 1:10 in train (the
    kept indices recorded), a class-conditional 3D cohort scored by minority recall beside random
    oversampling."""
    with np.load(shared_data / "medmnist" / "adrenalmnist3d.npz") as z:
        keep = {s: np.concatenate([np.flatnonzero(z[f"{s}_labels"][:, 0] == c)[:n] for c, n in enumerate(counts)])
                for s, counts in (("train", (120, 40)), ("val", (10, 6)), ("test", (20, 8)))}
        np.savez(tmp_path / "adrenal.npz", **{f"{s}_{k}": z[f"{s}_{k}"][keep[s]] for s in keep for k in ("images", "labels")})
    args = parser().parse_args([
        "--families", "wgan-gp", "--seeds", "0", "--steps", "1", "--adrenal", str(tmp_path / "adrenal.npz"),
        "--config", json.dumps({"wgan-gp": TINY}), "--utility-epochs", "1", "--utility-seeds", "1", "--bootstrap", "20",
        "--classifier", "small_cnn", "--models-dir", str(tmp_path / "models")])
    torch.set_num_threads(1)
    out = run_adrenal(["wgan-gp"], args, torch.device("cpu"))
    assert out["cut"]["train_counts"] == [120, 12] and out["cut"]["n_added"] == 108
    assert len(out["cut"]["kept_minority_train_indices"]) == 12
    assert set(out["baselines"]) == {"none", "random_oversampling"}
    row = out["families"]["wgan-gp"]["0"]
    assert 0 <= row["utility"]["synthetic"]["values"]["minority_recall"] <= 1 and "s_fid" in row
    assert "| random_oversampling |" in markdown_table(None, out)
