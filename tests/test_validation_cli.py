"""`synthcohort validate` and validate_cohort through the dataset store, on real BreastMNIST."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthcohort.cli import main
from synthcohort.imaging.sample_dir import write_sample_dir
from synthcohort.store.ingest import import_path

pytestmark = pytest.mark.shared_data

BUDGET = {"bootstrap": 20, "kid_subsets": 5, "encoder_epochs": 1, "utility": False, "tsne": False}


@pytest.fixture()
def breast(shared_data, tmp_path):
    version = import_path(shared_data / "medmnist" / "breastmnist.npz")
    train = version.split("train")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(BUDGET))
    return version, train, cfg


def test_cli_validates_a_sample_dir_and_exits_by_verdict(breast, tmp_path, capsys):
    version, train, cfg = breast
    val = version.split("val")
    # the val images of the class: real, unseen by training, written as a sample directory
    cohort = np.concatenate([val.images[val.labels == 0], train.images[train.labels == 0][:2]])
    samples = tmp_path / "cohort" / "samples"
    write_sample_dir(samples, cohort, class_name="malignant", seed=7, model_id="mdl-test")
    out = tmp_path / "cohort" / "report"
    code = main(["validate", "--samples", str(samples), "--dataset", version.id, "--class", "malignant",
                 "--out", str(out), "--config", str(cfg), "--no-progress"])
    printed = capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    assert code == (1 if data["verdict"] == "failed" else 0)
    assert f"verdict: {data['verdict']}" in printed and str(out / "report.html") in printed
    s_fid = data["metrics"]["s_fid"]
    assert f"s_fid {s_fid['value']:.3g} [{s_fid['ci'][0]:.3g}, {s_fid['ci'][1]:.3g}] (threshold 0.9" in printed
    # the standard FID is in every 2D report, with no step of the user's
    fid = data["metrics"]["fid_inception"]["value"]
    assert fid > 0 and f"Inception FID {fid:.4g}, relative" in printed
    assert not any("not computed" in w for w in data["warnings"])
    assert data["provenance"]["dataset_id"] == version.id and data["provenance"]["model_ids"] == ["mdl-test"]
    assert [s["file"] for s in data["samples"]][:2] == ["images/000000.png", "images/000001.png"]
    # the two training images planted at the end come back as near-copies of themselves
    planted = data["samples"][-2:]
    ids = [train.sample_ids[i] for i in np.flatnonzero(train.labels == 0)[:2]]
    for s, sid in zip(planted, ids):
        assert any(f["kind"] == "near_copy" for f in s["flags"])
        assert s["nearest_train"]["pixel_sample_id"] == sid
    assert data["verdict"] in ("needs_review", "failed")

    # a collapsed cohort fails: exit 1
    collapsed = tmp_path / "collapsed"
    write_sample_dir(collapsed, np.repeat(cohort[:1], 40, axis=0), class_name="malignant", seed=7, model_id="mdl-test")
    code = main(["validate", "--samples", str(collapsed), "--dataset", version.id, "--class", "malignant",
                 "--out", str(tmp_path / "r2"), "--config", str(cfg), "--no-progress"])
    assert code == 1 and "verdict: failed" in capsys.readouterr().out


def test_cli_bad_input_is_one_line_and_exit_2(breast, tmp_path, capsys):
    version, train, cfg = breast
    samples = tmp_path / "s"
    write_sample_dir(samples, train.images[:8], class_name="malignant", seed=0, model_id="m")
    assert main(["validate", "--samples", str(samples), "--dataset", version.id, "--class", "nope",
                 "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class_name" in err[0] and "nope" in err[0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"similarity_threshold": -1}))
    assert main(["validate", "--samples", str(samples), "--dataset", version.id, "--class", "malignant",
                 "--config", str(bad)]) == 2
    assert "similarity_threshold" in capsys.readouterr().err
    assert main(["validate", "--samples", str(tmp_path / "missing"), "--dataset", version.id, "--class", "malignant",
                 "--config", str(cfg)]) == 2
    assert "manifest.csv" in capsys.readouterr().err
