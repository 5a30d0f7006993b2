"""Archives: a good zip/tar imports like its folder; hostile members are refused by name and
nothing is left behind."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from synthcohort.core.errors import InvalidInputError, TooLargeError
from synthcohort.core.settings import get_settings
from synthcohort.store.datasets import DatasetStore
from synthcohort.store.ingest import import_path


def assert_nothing_left(home):
    assert DatasetStore().list() == []
    for sub in ("datasets", "tmp"):
        assert not (home / sub).exists() or list((home / sub).iterdir()) == []


def expect_error(home, path, match, err=InvalidInputError):
    with pytest.raises(err) as exc:
        import_path(path)
    assert match in exc.value.message, exc.value.message
    assert_nothing_left(home)
    return exc.value


def _png_bytes(seed: int, size=(12, 12)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _members():
    return {f"data/{cls}/{i}.png": _png_bytes(10 * k + i) for k, cls in enumerate(("a", "b")) for i in range(5)}


def _zip(path, members, extra=None):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if extra:
            extra(zf)
    return path


def _tar(path, members, extra=None, mode="w:gz"):
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if extra:
            extra(tf)
    return path


def test_zip_and_tar_import_like_the_folder(synthcohort_home, tmp_path):
    folder = tmp_path / "folder"
    for name, data in _members().items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    from_folder = import_path(folder / "data")
    from_zip = import_path(_zip(tmp_path / "data.zip", _members()))
    from_tar = import_path(_tar(tmp_path / "data.tar.gz", _members()))
    # same pictures, same classes, same split → the same content id, whatever the container
    assert from_zip.meta.id == from_tar.meta.id == from_folder.meta.id
    assert from_zip.meta.classes == ["a", "b"]
    assert from_zip.samples()[0].source_file.startswith(("a/", "b/"))
    tmp = synthcohort_home / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


@pytest.mark.parametrize("evil", ["../escape.png", "/etc/evil.png", "data/../../x.png"])
def test_zip_path_escapes_are_refused(synthcohort_home, tmp_path, evil):
    members = {**_members(), evil: b"x"}
    arc = _zip(tmp_path / "evil.zip", members)
    e = expect_error(synthcohort_home, arc, repr(evil))
    assert str(arc) in e.message and not (tmp_path / "escape.png").exists()


def test_zip_symlink_is_refused(synthcohort_home, tmp_path):
    def add_link(zf):
        info = zipfile.ZipInfo("data/a/link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")

    e = expect_error(synthcohort_home, _zip(tmp_path / "link.zip", _members(), add_link), "'data/a/link.png'")
    assert "symbolic link" in e.reason


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "device", "dotdot"])
def test_tar_hostile_members_are_refused(synthcohort_home, tmp_path, kind):
    def add(tf):
        info = tarfile.TarInfo("data/a/bad.png" if kind != "dotdot" else "../bad.png")
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "data/a/0.png"
        elif kind == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        else:
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
            return
        tf.addfile(info)

    arc = _tar(tmp_path / f"{kind}.tar", _members(), add, mode="w")
    e = expect_error(synthcohort_home, arc, "bad.png")
    assert {"symlink": "symbolic link", "hardlink": "hard link", "device": "device", "dotdot": "'..'"}[kind] in e.reason


def test_member_over_max_file_bytes(synthcohort_home, tmp_path, monkeypatch):
    members = {**_members(), "data/a/huge.png": b"\x00" * 5000}
    arc = _zip(tmp_path / "big.zip", members)
    monkeypatch.setenv("SYNTHCOHORT_MAX_FILE_BYTES", "4000")
    get_settings.cache_clear()
    e = expect_error(synthcohort_home, arc, "'data/a/huge.png'", err=TooLargeError)
    assert "max_file_bytes" in e.reason


def test_archive_total_over_max_upload_bytes(synthcohort_home, tmp_path, monkeypatch):
    members = {f"data/a/{i}.bin": b"\x00" * 3000 for i in range(10)}  # compresses to far less than 30 kB
    arc = _zip(tmp_path / "bomb.zip", members)
    monkeypatch.setenv("SYNTHCOHORT_MAX_UPLOAD_BYTES", "20000")
    get_settings.cache_clear()
    assert arc.stat().st_size < 20000
    e = expect_error(synthcohort_home, arc, "max_upload_bytes", err=TooLargeError)
    assert str(arc) in e.message


def test_truncated_archive(synthcohort_home, tmp_path):
    arc = _tar(tmp_path / "cut.tar.gz", _members())
    arc.write_bytes(arc.read_bytes()[:200])
    with pytest.raises(InvalidInputError) as exc:
        import_path(arc)
    assert str(arc) in exc.value.message
    assert_nothing_left(synthcohort_home)


def test_zipped_medmnist_npz(synthcohort_home, tmp_path):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, train_images=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8), train_labels=(np.arange(10) % 2)[:, None])
    version = import_path(_zip(tmp_path / "tiny.zip", {"tiny.npz": buf.getvalue()}))
    assert version.meta.source["format"] == "medmnist" and version.meta.source["archive"] == "tiny.zip"
    assert version.meta.counts["train"] == {"label_0": 5, "label_1": 5}
    assert_nothing_left_but(synthcohort_home, version.meta.id)


def assert_nothing_left_but(home, dataset_id):
    assert [p.name for p in (home / "datasets").iterdir()] == [dataset_id]
    assert not (home / "tmp").exists() or list((home / "tmp").iterdir()) == []
