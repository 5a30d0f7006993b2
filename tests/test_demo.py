"""`synthcohort demo` end to end, as a user runs it (own process, embedded broker, SQLite), with
two training steps (the default run, and its time, is ``benchmarks/demo_time.py``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end(synthcohort_home: Path):
    env = {**os.environ, "SYNTHCOHORT_HOME": str(synthcohort_home), "SYNTHCOHORT_DEVICE": "cpu"}
    for var in ("SYNTHCOHORT_DATABASE_URL", "SYNTHCOHORT_BROKER_URL", "SYNTHCOHORT_RESULT_BACKEND"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "synthcohort", "demo", "--steps", "2", "--seed", "3"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=500,
    )
    out = proc.stdout
    log = synthcohort_home / "demo" / "worker.log"
    assert proc.returncode == 0, f"{out}\n{proc.stderr[-3000:]}\n{log.read_text()[-4000:] if log.exists() else ''}"

    assert f"broker    sqla+sqlite:///{synthcohort_home.resolve()}/broker.db" in out
    cohort_id = re.search(r"^cohort\s+(coh-\w+)", out, re.M).group(1)
    verdict = re.search(r"^verdict\s+(\w+)", out, re.M).group(1)
    assert verdict in ("passed", "failed", "needs_review")
    found = re.search(r"^samples\s+(\d+) released, (\d+) (held for review|withheld \(cohort failed\)), "
                      r"(\d+) rejected \(of (\d+)\)", out, re.M)
    released, held, rejected, count = (int(found.group(i)) for i in (1, 2, 4, 5))
    assert count == 64 and released + held + rejected == 64  # the default count
    assert (found.group(3) == "withheld (cohort failed)") is (verdict == "failed")
    if verdict == "failed":
        assert released == 0
    # the review page's address, on the API the demo ran
    api_url = re.search(r"^API\s+(http://127\.0\.0\.1:\d+)", out, re.M).group(1)
    assert re.search(rf"^page\s+{re.escape(api_url)}/ui/cohorts/{cohort_id}$", out, re.M), out
    report = Path(re.search(r"^report\s+(\S+)", out, re.M).group(1))
    assert report == synthcohort_home.resolve() / "cohorts" / cohort_id / "report" / "report.html"
    assert report.is_file() and "<html" in report.read_text()[:2000].lower()
    data = json.loads((report.parent / "report.json").read_text())
    # the phantom set is large enough for the gate to decide: S_FID compares N ≥ 2 × the feature
    # dimension real reference and hold-out images (fewer and FD's covariance is unstable)
    dim = data["provenance"]["config"]["feature_dim"]
    assert data["details"]["reference"]["n"] >= 2 * dim and data["metrics"]["s_fid"]["n"] >= 2 * dim
    assert not [w for w in data["warnings"] if "feature dim" in w], data["warnings"]
    assert data["metrics"]["fid_inception"]["value"] > 0 and "Inception FID" in out  # no step of the user's
    # a gate below its threshold whose CI still reaches it sends the cohort to a reviewer, and says so
    undecided = [n for n, m in data["metrics"].items() if m["passed"] is False and m["decisive"] is False]
    if undecided:
        assert verdict == "needs_review" and "not decisive" in out and "not decisive" in report.read_text()
    if released:
        folder = Path(re.search(r"^download\s+(\S+)", out, re.M).group(1))
        assert (folder / "SHA256SUMS").is_file() and (folder / "manifest.csv").is_file()
        assert len((folder / "manifest.csv").read_text().strip().splitlines()) == released + 1
    # the stages of the cohort job the polls saw (a stage shorter than a poll may be missed), timed, and the whole run
    assert re.search(r"^time\s+.*validate \d+ s; the whole demo \d+ min \d+ s$", out, re.M), out
    # progress was shown (tqdm on stderr) and the processes are gone
    assert "cohort:" in proc.stderr and "%" in proc.stderr
    worker_pid = int(re.search(r"^worker\s+pid (\d+)", out, re.M).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)
