"""``synthcohort datasets ...`` on the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthcohort.cli import main
from synthcohort.store.datasets import DatasetStore


def _small_npz(path):
    rng = np.random.default_rng(0)
    np.savez(path, train_images=rng.integers(0, 256, (20, 8, 8), dtype=np.uint8), train_labels=(np.arange(20) % 2)[:, None],
             val_images=rng.integers(0, 256, (4, 8, 8), dtype=np.uint8), val_labels=(np.arange(4) % 2)[:, None],
             test_images=rng.integers(0, 256, (6, 8, 8), dtype=np.uint8), test_labels=np.array([[0]] * 5 + [[1]]))
    return path


def test_import_prints_only_the_id_then_show_and_list(tmp_path, capsys):
    npz = _small_npz(tmp_path / "tiny.npz")
    assert main(["datasets", "import", str(npz), "--classes", "common,rare", "--size", "16x16", "--modality", "xr"]) == 0
    out = capsys.readouterr().out
    ds_id = out.strip()
    assert out == ds_id + "\n" and ds_id.startswith("ds-")
    meta = DatasetStore().get(ds_id).meta
    assert meta.image_size == (16, 16) and meta.classes == ["common", "rare"] and meta.modality == "XR"

    assert main(["datasets", "show", ds_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["counts"] == {"train": {"common": 10, "rare": 10}, "val": {"common": 2, "rare": 2},
                               "test": {"common": 5, "rare": 1}}
    assert main(["datasets", "show", ds_id]) == 0
    text = capsys.readouterr().out
    assert "rare" in text and "16x16" in text
    assert main(["datasets", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["ID", "NAME", "MODALITY"] and table[1].startswith(ds_id)


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk" * 10)
    assert main(["datasets", "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and err.startswith("synthcohort: error:")
    assert main(["datasets", "show", "ds-0123456789abcdef"]) == 2
    assert "no dataset version" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["datasets", "import", str(bad), "--size", "64xx"])
    assert exc.value.code == 2
    assert DatasetStore().list() == []


def test_demo_prints_the_id_of_the_phantom_set(capsys):
    assert main(["datasets", "demo", "--seed", "1"]) == 0
    ds_id = capsys.readouterr().out.strip()
    assert main(["datasets", "show", ds_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["counts"]["train"] == {"normal": 640, "lesion": 128} and shown["has_masks"] is True
    assert shown["image_size"] == [32, 32]
