"""benchmarks/quality3d.py end to end at a small scale on real hippocampus volumes: the output has
its split, cohort, control and segmentation figures. That real pairs pass the Dice gate through
``validate_cohort`` and shuffled ones fail is tested at the import's grid (32×48×32) in
tests/test_validation_3d.py: at this test's half grid (16×24×16) the centred crops' masks overlap
so much that a segmenter trained on shuffled pairs still reached 0.90 of the real one (measured)."""

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
    augmented_masks,
    derangement,
    markdown_table,
    merged_runs,
    parser,
    run_adrenal,
    run_hippocampus,
    with_sampling,
)
from synthcohort.core.errors import InvalidInputError
from synthcohort.generators.base import GeneratorSpec

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


def test_benchmark_end_to_end(hippocampus_subset, tmp_path) -> None:
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
    assert 0 <= seg["dsc_real"] <= 1 and row["dice_ratio"]["ci"][0] <= row["dice_ratio"]["ci"][1]
    assert row["dice_ratio"]["value"] == pytest.approx(seg["dsc_synthetic_trained"] / seg["dsc_real"], rel=1e-3)
    assert seg["gain"]["value"] == pytest.approx(seg["dsc_real_plus_synthetic"] - seg["dsc_real"])
    assert row["control_failed"] is (row["shuffled_control"]["dice_ratio"]["passed"] is False)
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
        "--classifier", "small_cnn", "--models-dir", str(tmp_path / "models"),
        "--adrenal-arms", "synthetic", "synthetic_ros"])
    torch.set_num_threads(1)
    out = run_adrenal(["wgan-gp"], args, torch.device("cpu"))
    assert out["cut"]["train_counts"] == [120, 12] and out["cut"]["n_added"] == 108
    assert len(out["cut"]["kept_minority_train_indices"]) == 12
    assert set(out["baselines"]) == {"none", "random_oversampling"}
    row = out["families"]["wgan-gp"]["0"]
    assert 0 <= row["utility"]["synthetic"]["values"]["minority_recall"] <= 1 and "s_fid" in row
    assert set(row["utility"]) == {"synthetic", "synthetic_ros"}  # only the arms asked for (3 classifiers each)
    table = markdown_table(None, out)
    assert "| random_oversampling |" in table and "| wgan-gp, synthetic_ros | 1 |" in table
    assert "recall at the none arm's specificity" in table


def test_runs_split_by_seed_merge_into_one_table(tmp_path) -> None:
    def row(ratio: float) -> dict:
        return {"steps": 8, "dice_ratio": {"value": ratio, "ci": [ratio - 0.01, ratio + 0.01], "passed": ratio >= 0.9},
                "mask_fidelity": 0.7, "segmentation": {"gain": {"value": 0.01, "ci": [0.0, 0.02]}},
                "shuffled_control": {"dice_ratio": {"value": 0.5}}, "control_failed": True, "s_fid": {"value": 0.1},
                "coverage_ratio": 0.9, "flagged": {"near_copy": 1}, "train_seconds": 600.0}

    split = {"dataset_id": "ds-x", "train": ["a"], "val": ["b"], "test": ["c"]}
    paths = []
    for seed, ratio in ((0, 0.90), (1, 0.96)):
        r = row(ratio) if seed == 0 else {**row(ratio), "shuffled_control": None, "control_failed": None}  # not run
        paths.append(tmp_path / f"run{seed}.json")
        paths[-1].write_text(json.dumps({"hippocampus": {"split": split, "families": {"ld": {str(seed): r}}},
                                         "adrenal": None}))
    hippo, adrenal = merged_runs(paths)
    assert set(hippo["families"]["ld"]) == {"0", "1"} and adrenal is None
    table = markdown_table(hippo, None)
    assert "| ld | 2 | 8 | 0.930 [0.92, 0.94] |" in table and "| 0.500 (1/1 fail) |" in table
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hippocampus": {"split": {**split, "test": ["d"]}, "families": {}}}))
    with pytest.raises(InvalidInputError, match="split"):
        merged_runs(paths + [other])


def test_sampling_override_changes_how_a_trained_model_draws_and_nothing_else() -> None:
    """``--sampling`` sets DDIM's η on the trained model (the draws change, the weights do not) and
    refuses a field that training reads."""
    from synthcohort.generators.registry import get_generator

    family = get_generator("diffusion")
    cfg = family.Config(channels=(8, 16), attention_levels=(False, False), sampling_steps=4, batch_size=2)
    model = family(GeneratorSpec(2, 1, (8, 8), 1), cfg, seed=0)
    before = model.sample(3, 0, seed=1)
    args = parser().parse_args(["--sampling", json.dumps({"diffusion": {"eta": 1.0}, "wgan-gp": {"eta": 0.5}})])
    assert with_sampling(model, "diffusion", args) is model and model.config.eta == 1.0
    assert model.config.sampling_steps == 4 and model.config.channels == (8, 16)
    after = model.sample(3, 0, seed=1)
    assert not np.allclose(before, after)
    assert np.array_equal(after, model.sample(3, 0, seed=1))  # still seeded
    with pytest.raises(InvalidInputError, match="lr") as err:
        with_sampling(model, "diffusion", parser().parse_args(["--sampling", '{"diffusion": {"lr": 0.1}}']))
    assert err.value.field == "sampling"
    with pytest.raises(InvalidInputError, match="eta") as err:  # validated like a request: η is DDIM's only
        with_sampling(model, "diffusion", parser().parse_args(
            ["--sampling", '{"diffusion": {"sampler": "dpm_solver++", "eta": 0.5}}']))
    assert err.value.field.startswith("config")
