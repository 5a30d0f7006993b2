"""Archive fuzz (issue 20): generated zips and tars with hostile member names (absolute, ``..``,
very long, NUL and odd bytes, duplicates, file-versus-folder clashes), types (symbolic and hard
links, devices, FIFOs) and sizes (bombs), uploaded through the real app. Each one is answered
4xx with a JSON body naming the member (or the archive, for whole-archive faults) or accepted
cleanly; never a 5xx, and a refusal leaves nothing in uploads/ and no job. Seeded
(``derandomize``) and bounded, so it runs the same few seconds every time."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api_fixtures import Api

MAX_FILE = 64 * 1024
BOMB = 4 * MAX_FILE  # expands past max_file_bytes; compresses to a few hundred bytes
HOSTILE = ["/etc/passwd", "../../evil.png", "a/../../b.png", "C:/win.png", "\\\\server\\share.png", "a\\..\\..\\c",
           "x", "x/y.png", "x/", "./", ".", "", "f" * 300, "d/" + "g" * 256 + ".png", "/".join(["abcdefghij"] * 110),
           "a\x00b.png", "new\nline.png", "tab\t.png", "\x7f.png", "é/ü.png", "日本/画像.png", "a//b.png",
           "con.png", " .png", "-rf.png", "img.nii", "scan.dcm", "d/img.nii.gz"]
KINDS = ["file", "file", "file", "dir", "symlink", "hardlink", "chardev", "blockdev", "fifo"]
# refusals that concern the whole archive, not one member
ARCHIVE_LEVEL = ("holds no files", "declares", "not a readable", "corrupt", "expands past")


@dataclass(frozen=True)
class Member:
    name: str
    kind: str
    data: bytes


names = st.one_of(
    st.sampled_from(HOSTILE),
    st.lists(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12),
             min_size=1, max_size=4).map("/".join),
    st.binary(min_size=1, max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
data = st.one_of(st.just(b"pixels"), st.binary(max_size=64), st.just(b"\0" * BOMB))
members = st.lists(st.builds(Member, names, st.sampled_from(KINDS), data), min_size=1, max_size=4)


def build_zip(items: list[Member]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for m in items:
            name = m.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace") or "?"
            info = zipfile.ZipInfo(name + ("/" if m.kind == "dir" and not name.endswith("/") else ""))
            mode = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "hardlink": stat.S_IFREG,
                    "chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK, "fifo": stat.S_IFIFO}[m.kind]
            info.external_attr = (mode | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, b"" if m.kind == "dir" else (b"/etc/passwd" if m.kind == "symlink" else m.data))
    return buf.getvalue()


def build_tar(items: list[Member], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tf:
        for m in items:
            info = tarfile.TarInfo(m.name)
            info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE, "chardev": tarfile.CHRTYPE, "blockdev": tarfile.BLKTYPE,
                         "fifo": tarfile.FIFOTYPE}[m.kind]
            if m.kind in ("symlink", "hardlink"):
                info.linkname = "/etc/passwd"
            if m.kind == "file":
                info.size = len(m.data)
                tf.addfile(info, io.BytesIO(m.data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def uploads(home: Path) -> list[Path]:
    return sorted((home / "uploads").iterdir()) if (home / "uploads").exists() else []


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_hostile_archives_are_4xx_naming_the_member_or_accepted_never_5xx(
        api: Api, synthcohort_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcohort.core.settings import get_settings

    monkeypatch.setenv("SYNTHCOHORT_MAX_FILE_BYTES", str(MAX_FILE))
    monkeypatch.setenv("SYNTHCOHORT_MAX_UPLOAD_BYTES", str(8 * MAX_FILE))
    get_settings.cache_clear()
    seen = {"accepted": 0, "refused": 0}

    @settings(max_examples=120, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(items=members, kind=st.sampled_from(["zip", "tar", "tar.gz"]))
    def probe(items: list[Member], kind: str) -> None:
        content = build_zip(items) if kind == "zip" else build_tar(items, "w:gz" if kind == "tar.gz" else "w")
        before_jobs, before_uploads = api.counts()["jobs"], uploads(synthcohort_home)
        r = api.post("/v1/datasets", "alice", data={"modality": "US"},
                     files={"file": (f"fuzz.{kind}", content, "application/octet-stream")})
        assert r.status_code < 500, r.text
        body = r.json()
        if r.status_code == 202:
            seen["accepted"] += 1
            assert api.counts()["jobs"] == before_jobs + 1
            return
        seen["refused"] += 1
        assert 400 <= r.status_code < 500 and body["detail"], body
        assert body.get("member") is not None or any(w in body["detail"] for w in ARCHIVE_LEVEL), body
        assert body.get("path") == f"fuzz.{kind}" and str(synthcohort_home) not in r.text
        assert api.counts()["jobs"] == before_jobs and uploads(synthcohort_home) == before_uploads
        assert not list(synthcohort_home.parent.rglob("evil*")) and not list(synthcohort_home.parent.rglob("win.png"))

    probe()
    assert seen["accepted"] > 0 and seen["refused"] > seen["accepted"], seen
