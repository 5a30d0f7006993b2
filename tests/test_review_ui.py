"""The review page in a real Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by
Selenium), against a real ``synthcohort serve`` with its worker, over real HTTP.

One served stack per module: BreastMNIST uploaded by a requester (alice), a cohort of the
minority class trained and validated by the worker, and a second cohort sampled from the same
model that fails. How they get their verdicts (as in tests/test_service_flow.py): a 4-step
generator makes noise; an admin (only an admin may loosen a gate) turns the gates off and asks
for the most generous flags, so the first cohort is ``needs_review`` with its samples held; the
second raises the similarity pass mark out of reach, so it fails. Only an admin may do the
former, so the admin requests that cohort and the fixture then hands it to alice in the
database (the API has no transfer): what is tested is what alice, the reviewer and bob see.

Screenshots go to ``$SYNTHCOHORT_ARTIFACTS`` (default ``tests/artifacts/``, not committed).
Without the browser the tests skip locally and fail in CI (``CI`` set), like the shared data.
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service_fixtures import free_port

pytestmark = [pytest.mark.slow, pytest.mark.shared_data, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("SYNTHCOHORT_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("SYNTHCOHORT_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
ARTIFACTS = Path(os.environ.get("SYNTHCOHORT_ARTIFACTS", REPO / "tests" / "artifacts"))
WAIT_S = 30.0

FAST_VALIDATION = {
    "bootstrap": 20, "encoder_epochs": 2, "utility": False, "tsne": False, "use_inception": False,
    "kid_subsets": 5, "kid_subset_size": 20,
    "similarity_threshold": 0.0, "coverage_ratio_threshold": 0.0, "entropy_ratio_threshold": 0.0,
    "outlier_quantile": 0.51, "copy_quantile": 0.49,
}
UNREACHABLE = {**FAST_VALIDATION, "similarity_threshold": 1e6}  # S_FID is near 1: this gate fails
TINY_WGAN = {"batch_size": 8, "g_channels": 8, "d_channels": 8, "max_channels": 32, "n_critic": 1, "z_dim": 16,
             "embed_dim": 8, "log_every": 1}
COUNT = 16


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} (required in CI: apt-get install chromium chromium-driver)")
    pytest.skip(what)


# ------------------------------------------------------------------------------ the served stack
@dataclass
class Site:
    url: str
    home: Path
    keys: dict[str, str]  # who → plain key: admin, reviewer, alice (requester), bob (requester)
    key_ids: dict[str, int]
    review_id: str  # needs_review, alice's
    failed_id: str  # failed validation
    model_id: str
    dataset_id: str
    logs: list[Path]

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.home / 'synthcohort.db'}"

    def http(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.keys[who]}, timeout=60.0)

    def samples(self, cohort_id: str) -> dict[int, dict]:
        with self.http("admin") as c:
            r = c.get(f"/v1/cohorts/{cohort_id}/samples", params={"limit": 500})
        assert r.status_code == 200, r.text
        return {s["index"]: s for s in r.json()["items"]}

    def wait_job(self, job_id: str, timeout: float = 400.0, until: Callable[[dict], bool] | None = None) -> dict:
        """Poll the job until it ends (or ``until(job)``)."""
        deadline = time.monotonic() + timeout
        with self.http("admin") as c:
            while True:
                job = c.get(f"/v1/jobs/{job_id}").json()
                if until(job) if until is not None else job["status"] in ("succeeded", "failed", "cancelled"):
                    return job
                if time.monotonic() > deadline:
                    raise AssertionError(f"job {job_id} still {job}\n{self.log_tail()}")
                time.sleep(0.5)

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.logs if p.exists())


def _idem() -> dict[str, str]:
    return {"Idempotency-Key": secrets.token_hex(8)}


def _start_serve(home: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SYNTHCOHORT_DATABASE_URL", "SYNTHCOHORT_BROKER_URL", "SYNTHCOHORT_RESULT_BACKEND")}
    env.update({"SYNTHCOHORT_HOME": str(home), "SYNTHCOHORT_DEVICE": "cpu", "OMP_NUM_THREADS": "1",
                "SYNTHCOHORT_LOG_LEVEL": "INFO"})
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "synthcohort", "serve", "--port", str(port)], cwd=REPO,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"synthcohort serve exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"synthcohort serve did not answer:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Site]:
    from synthcohort.api.keys import create_api_key
    from synthcohort.store.db import Cohort, Job, Role, session_factory

    home = tmp_path_factory.mktemp("review-ui") / "home"
    home.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / "serve.log"
    proc = _start_serve(home, port, log)
    try:
        _wait_healthy(url, proc, log)
        db_url = f"sqlite:///{home / 'synthcohort.db'}"
        keys, key_ids = {}, {}
        with session_factory(db_url)() as s:  # `serve` migrated this database before answering
            for who, role in (("admin", Role.admin), ("reviewer", Role.reviewer), ("alice", Role.requester),
                              ("bob", Role.requester)):
                row, keys[who] = create_api_key(s, role, who)
                key_ids[who] = row.id
        site = Site(url, home, keys, key_ids, "", "", "", "", [log, home / "logs" / "worker.log"])
        with site.http("alice") as c, open(shared_data / "medmnist" / "breastmnist.npz", "rb") as f:
            r = c.post("/v1/datasets", headers=_idem(), files={"file": ("breastmnist.npz", f)},
                       data={"format": "medmnist", "modality": "US", "classes": "malignant,normal_benign"})
        assert r.status_code == 202, r.text
        job = site.wait_job(r.json()["job_id"], timeout=180)
        assert job["status"] == "succeeded", f"{job}\n{site.log_tail()}"
        dataset_id = job["target_id"]
        with site.http("admin") as c:
            r = c.post("/v1/cohorts", headers=_idem(), json={
                "dataset_id": dataset_id, "class_name": "malignant", "generator": "wgan-gp", "train_steps": 4,
                "config": TINY_WGAN, "count": COUNT, "seed": 7, "validation": FAST_VALIDATION})
            assert r.status_code == 202, r.text
            review = r.json()
            job = site.wait_job(review["job_id"])
            assert job["status"] == "succeeded", f"{job}\n{site.log_tail()}"
            review = c.get(f"/v1/cohorts/{review['id']}").json()
            r = c.post("/v1/cohorts", headers=_idem(), json={"model_id": review["model_id"], "count": 8, "seed": 8,
                                                              "validation": UNREACHABLE})
            assert r.status_code == 202, r.text
            failed = r.json()
            job = site.wait_job(failed["job_id"])
            assert job["status"] == "succeeded", f"{job}\n{site.log_tail()}"
            failed = c.get(f"/v1/cohorts/{failed['id']}").json()
        assert (review["verdict"], failed["verdict"]) == ("needs_review", "failed"), (review, failed)
        assert review["held"] >= 6, f"the tests need six flagged samples; got {review}"
        with session_factory(db_url)() as s:  # hand the cohort to alice (see the module's docstring)
            s.get(Cohort, review["id"]).owner_id = key_ids["alice"]
            s.get(Job, review["job_id"]).owner_id = key_ids["alice"]
            s.commit()
        site.review_id, site.failed_id, site.model_id = review["id"], failed["id"], review["model_id"]
        site.dataset_id = dataset_id
        yield site
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# ------------------------------------------------------------------------------ the browser
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
        _missing(f"Chromium not found ({CHROMIUM}, {CHROMEDRIVER})")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1440,1100", "--no-first-run", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    downloads = tmp_path_factory.mktemp("downloads")
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, check: Callable, what: str, timeout: float = WAIT_S):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def safe(d):
        try:
            return check(d)
        except StaleElementReferenceException:
            return False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(safe)
    except TimeoutException:
        shot(driver, f"timeout-{what.replace(' ', '-')[:40]}")
        status = driver.execute_script("return document.getElementById('status')?.textContent || ''")
        raise AssertionError(f"timed out waiting for {what}; status line: {status!r}") from None


def shot(driver, name: str, *, at: str | None = None, full: bool = False) -> Path:
    """A PNG of the window (scrolled to ``at`` first), or of the whole page with ``full``."""
    import base64

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if at is not None:
        driver.execute_script("document.querySelector(arguments[0]).scrollIntoView()", at)
    if full:
        data = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(data["data"]))
    else:
        driver.save_screenshot(str(path))
    return path


def text_of(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def sign_in(driver, site: Site, who: str, path: str) -> None:
    """Open ``path`` in a fresh tab state and sign in with ``who``'s key through the form."""
    from selenium.webdriver.common.by import By

    driver.get(site.url + "/ui/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(site.url + path)
    field = wait_for(driver, lambda d: d.find_element(By.ID, "api-key"), "the sign-in form")
    field.send_keys(site.keys[who])
    driver.find_element(By.ID, "sign-in-button").click()
    wait_for(driver, lambda d: who in d.find_element(By.ID, "who").text, f"signed in as {who}")


def press(driver, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def progress_is(driver, decided: int, flagged: int) -> Callable:
    return lambda d: text_of(d, "#progress").startswith(f"{decided} of {flagged} decided")


def assert_no_placeholder_words(driver) -> None:
    """No JavaScript null/undefined/NaN leaks into what the page says."""
    from selenium.webdriver.common.by import By

    words = set(re.findall(r"[A-Za-z]+", driver.find_element(By.TAG_NAME, "main").text))
    assert not words & {"null", "undefined", "NaN"}, words & {"null", "undefined", "NaN"}


def assert_key_never_in_an_address(driver, site: Site) -> None:
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])")
    assert urls and not [u for u in urls for key in site.keys.values() if key in u]


# ------------------------------------------------------------------------------ the tests
def test_reviewer_decides_by_keyboard_and_the_archive_holds_exactly_the_released(browser, site: Site) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from sqlalchemy import create_engine, text

    before = site.samples(site.review_id)
    flagged = sorted(i for i, s in before.items() if s["flags"])
    n = len(flagged)
    assert all(before[i]["state"] == "held" for i in flagged)
    f0, f1, f2, f3, f4, f5 = flagged[:6]

    sign_in(browser, site, "reviewer", f"/ui/cohorts/{site.review_id}")
    wait_for(browser, progress_is(browser, 0, n), "the review's progress")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#nearest figure.neighbour"), "nearest images")
    assert text_of(browser, "#verdict") == "needs review"
    assert "Needs review" in text_of(browser, "#summary")
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#nearest figcaption")]
    assert any("near copy at ≤" in c for c in captions) and any("near copy at ≥" in c for c in captions), captions
    assert text_of(browser, "#detail h3").startswith(f"Sample #{f0}")

    press(browser, "a")                          # approve f0; focus moves on to f1
    wait_for(browser, progress_is(browser, 1, n), "the first approval")
    press(browser, "a")                          # approve f1
    wait_for(browser, progress_is(browser, 2, n), "the second approval")
    press(browser, "z")                          # undo: f1 back to pending
    wait_for(browser, progress_is(browser, 1, n), "the undo")
    press(browser, "j")                          # to f2
    wait_for(browser, lambda d: text_of(d, "#detail h3").startswith(f"Sample #{f2}"), f"sample {f2} in focus")
    press(browser, "r")
    wait_for(browser, lambda d: d.find_element(By.ID, "reason-dialog").get_attribute("open") is not None,
             "the reason dialog")
    press(browser, "2", Keys.ENTER)              # artefact
    wait_for(browser, progress_is(browser, 2, n), "the rejection")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#audit tr[data-review]")) == 4, "the trail")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#nearest figure.neighbour"), "nearest images")
    assert_no_placeholder_words(browser)
    shot(browser, "review-reviewer", at="#review")
    shot(browser, "review-reviewer-full", full=True)

    # what the page did is exactly what the API and the database hold
    after = site.samples(site.review_id)
    assert after[f0]["state"] == "released" and [r["decision"] for r in after[f0]["reviews"]] == ["approve"]
    assert after[f1]["state"] == "held" and [r["decision"] for r in after[f1]["reviews"]] == ["approve", "reset"]
    assert after[f2]["state"] == "rejected"
    assert [(r["decision"], r["reason_code"]) for r in after[f2]["reviews"]] == [("reject", "artefact")]
    untouched = {i: s for i, s in after.items() if i not in (f0, f1, f2)}
    assert all(s["state"] == before[i]["state"] and not s["reviews"] for i, s in untouched.items())
    with create_engine(site.db_url).connect() as conn:
        rows = conn.execute(text(
            "SELECT s.\"index\", r.decision, r.reason_code, r.reviewer_id FROM reviews r "
            "JOIN samples s ON s.id = r.sample_id WHERE s.cohort_id = :c ORDER BY r.id"), {"c": site.review_id}).all()
    assert [tuple(r) for r in rows] == [(f0, "approve", None, site.key_ids["reviewer"]),
                                        (f1, "approve", None, site.key_ids["reviewer"]),
                                        (f1, "reset", None, site.key_ids["reviewer"]),
                                        (f2, "reject", "artefact", site.key_ids["reviewer"])]
    trail = [tr.find_element(By.CSS_SELECTOR, ".decision").text
             for tr in browser.find_elements(By.CSS_SELECTOR, "#audit tr[data-review]")]
    assert trail == ["reject", "reset", "approve", "approve"]  # newest first
    assert "reviewer" in text_of(browser, "#audit tbody")

    # the report's pictures, each with its caption; the grid zooms without smoothing
    from synthcohort.validation.explanations import PICTURE_CAPTIONS

    for name in ("grid_real.png", "grid_synthetic.png"):
        fig = f'#pictures figure[data-picture="{name}"]'
        wait_for(browser, lambda d: d.execute_script(  # noqa: B023
            "const i = document.querySelector(arguments[0]); return i && i.complete && i.naturalWidth > 0;",
            f"{fig} img"), f"the picture {name}")
        assert text_of(browser, f"{fig} figcaption") == PICTURE_CAPTIONS[name]
    browser.execute_script("const s = document.getElementById('zoom'); s.value = 256;"
                           "s.dispatchEvent(new Event('input', {bubbles: true}));")
    tile = browser.find_element(By.CSS_SELECTOR, "#grid .tile canvas")
    assert tile.size["width"] == 256 and tile.value_of_css_property("image-rendering") == "pixelated"

    # the download holds exactly the released samples; the two lines of Python name this cohort
    released = sorted(i for i, s in after.items() if s["state"] == "released")
    assert f0 in released and f1 not in released and f2 not in released
    wait_for(browser, lambda d: d.find_elements(By.ID, "download"), "the download button").pop().click()
    archive = wait_for(browser, lambda d: next((p for p in d.downloads.glob("*.zip")), None), "the archive")
    wait_for(browser, lambda d: not list(d.downloads.glob("*.crdownload")), "the download to finish")
    with zipfile.ZipFile(archive) as z:
        rows = list(csv.DictReader(io.StringIO(z.read("manifest.csv").decode())))
        assert sorted(int(r["index"]) for r in rows) == released
        assert len([n for n in z.namelist() if n.startswith("images/")]) == len(released)
    python = text_of(browser, "#python")
    assert f'CohortDataset("{site.review_id}"' in python and "from synthcohort import" in python

    # shift-click selects a range; one key decides on all of it, and Z undoes all of it
    tiles = {int(t.get_attribute("data-index")): t for t in browser.find_elements(By.CSS_SELECTOR, "#grid .tile")}
    tiles[f3].click()
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).key_down(Keys.SHIFT).click(tiles[f5]).key_up(Keys.SHIFT).perform()
    wait_for(browser, lambda d: "3 selected" in text_of(d, "#progress"), "a range of three")
    press(browser, "a")
    wait_for(browser, progress_is(browser, 5, n), "the batch approval")
    assert all(site.samples(site.review_id)[i]["state"] == "released" for i in (f3, f4, f5))
    press(browser, "z")
    wait_for(browser, progress_is(browser, 2, n), "the batch undo")
    again = site.samples(site.review_id)
    assert all(again[i]["state"] == "held" and [r["decision"] for r in again[i]["reviews"]] == ["approve", "reset"]
               for i in (f3, f4, f5))
    assert {i: s["state"] for i, s in again.items()} == {i: s["state"] for i, s in after.items()}

    press(browser, "?")
    wait_for(browser, lambda d: d.find_element(By.ID, "help").get_attribute("open") is not None, "the help")
    press(browser, Keys.ESCAPE)
    assert_key_never_in_an_address(browser, site)
    logs = site.log_tail() + "".join(p.read_text(errors="replace") for p in site.logs if p.exists())
    assert "GET /v1/cohorts/" in logs  # the access log is on, and holds no key
    assert not [who for who, key in site.keys.items() if key in logs]


def test_requester_sees_own_cohort_but_cannot_decide(browser, site: Site) -> None:
    from selenium.webdriver.common.by import By

    before = site.samples(site.review_id)
    sign_in(browser, site, "alice", f"/ui/cohorts/{site.review_id}")
    wait_for(browser, lambda d: "decided" in text_of(d, "#progress"), "the review's progress")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#grid .tile"), "the grid")
    assert text_of(browser, "#verdict") == "needs review"
    assert "as a requester" in text_of(browser, "#read-only")
    for control in ("approve", "reject", "undo", "reset"):
        assert not browser.find_elements(By.ID, control), control
    held = [t for t in browser.find_elements(By.CSS_SELECTOR, "#grid .tile.state-held")]
    assert held and all("reviewers only" in t.text for t in held)  # held images may copy a patient
    press(browser, "a")
    press(browser, "r")
    time.sleep(1.0)  # give a (wrong) decision the time to reach the server
    assert browser.find_element(By.ID, "reason-dialog").get_attribute("open") is None
    assert site.samples(site.review_id) == before
    assert_no_placeholder_words(browser)
    shot(browser, "review-requester")
    assert_key_never_in_an_address(browser, site)
    browser.get(site.url + "/ui/")  # the list: her cohort, not the admin's failed one
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#cohorts tr[data-cohort]"), "the cohort list")
    listed = [tr.get_attribute("data-cohort")
              for tr in browser.find_elements(By.CSS_SELECTOR, "#cohorts tr[data-cohort]")]
    assert listed == [site.review_id]


def test_another_requester_gets_not_found(browser, site: Site) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, site, "bob", f"/ui/cohorts/{site.review_id}")
    wait_for(browser, lambda d: d.find_elements(By.ID, "not-found"), "not found")
    assert site.review_id in text_of(browser, "#not-found")
    assert not browser.find_elements(By.ID, "verdict") and not browser.find_elements(By.ID, "grid")
    assert "malignant" not in browser.find_element(By.TAG_NAME, "main").text
    shot(browser, "review-not-found")


def test_failed_cohort_offers_no_approve_button(browser, site: Site) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, site, "reviewer", f"/ui/cohorts/{site.failed_id}")
    wait_for(browser, lambda d: d.find_elements(By.ID, "withheld-note"), "the withheld note")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#grid .tile"), "the grid")
    assert text_of(browser, "#verdict") == "failed"
    assert text_of(browser, "#summary").startswith("Failed:")
    assert "Similarity to real images" in text_of(browser, "#reasons")
    states = {t.find_element(By.CSS_SELECTOR, ".state").text
              for t in browser.find_elements(By.CSS_SELECTOR, "#grid .tile")}
    assert states == {"withheld (cohort failed)"}
    assert "held for review" not in browser.find_element(By.TAG_NAME, "main").text
    assert not browser.find_elements(By.ID, "approve") and not browser.find_elements(By.ID, "reject")
    assert "Nothing is released" in text_of(browser, "#release")
    gates = {tr.get_attribute("data-metric"): tr.text
             for tr in browser.find_elements(By.CSS_SELECTOR, "#metrics-gated tr[data-metric]")}
    assert "fail" in gates["s_fid"] and "Similarity to real images: how close" in gates["s_fid"]
    assert " off " in f" {gates['coverage_ratio']} "  # a pass mark of 0: the gate was off
    press(browser, "a")
    time.sleep(1.0)
    assert all(s["state"] == "held" and not s["reviews"] for s in site.samples(site.failed_id).values())
    assert_no_placeholder_words(browser)
    shot(browser, "review-failed")


def test_pages_follow_jobs_live(browser, site: Site) -> None:
    """Deterministic, whatever the machine's speed: a long training occupies the one worker, so
    the cohort queued behind it waits until the test cancels the training."""
    from selenium.webdriver.common.by import By

    with site.http("admin") as c:
        long = c.post("/v1/cohorts", headers=_idem(), json={
            "dataset_id": site.dataset_id, "class_name": "malignant", "generator": "wgan-gp",
            "train_steps": 1_000_000, "config": TINY_WGAN, "count": 6, "seed": 11, "validation": FAST_VALIDATION})
        short = c.post("/v1/cohorts", headers=_idem(), json={"model_id": site.model_id, "count": 6, "seed": 12,
                                                              "validation": FAST_VALIDATION})
        assert long.status_code == short.status_code == 202, (long.text, short.text)
        long, short = long.json(), short.json()
    job = site.wait_job(long["job_id"], timeout=120, until=lambda j: j["stage"] == "train" or j["status"] != "queued")
    assert (job["status"], job["stage"]) == ("running", "train"), job

    def cells(row: str) -> dict[str, str]:
        return {k: text_of(browser, f"{row} .{k}") for k in ("status", "stage", "percent", "eta")}

    # the jobs page: the training's progress moves without a reload
    sign_in(browser, site, "admin", "/ui/jobs")
    row = f'#jobs tr[data-job="{long["job_id"]}"]'
    wait_for(browser, lambda d: cells(row)["stage"] == "train" and cells(row)["eta"].startswith("ETA "),
             "the training's stage and time left")
    bar = lambda d: float(d.find_element(By.CSS_SELECTOR, f"{row} progress").get_attribute("value"))  # noqa: E731
    first = bar(browser)
    wait_for(browser, lambda d: bar(d) > first, "the progress bar to move")
    assert cells(row)["status"] == "running"
    assert cells(f'#jobs tr[data-job="{short["job_id"]}"]')["status"] == "queued"
    shot(browser, "jobs-running")

    # a second tab: the queued cohort's page waits, then becomes its review when validated
    jobs_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    sign_in(browser, site, "admin", f"/ui/cohorts/{short['id']}")
    assert "the page shows its review once it is validated" in wait_for(
        browser, lambda d: text_of(d, "#cohort-status"), "the waiting note")
    with site.http("admin") as c:
        assert c.post(f"/v1/jobs/{long['job_id']}/cancel").status_code == 202
    wait_for(browser, lambda d: d.find_elements(By.ID, "verdict"), "the review after validation", timeout=180)
    assert text_of(browser, "#verdict") == "needs review"
    browser.close()
    browser.switch_to.window(jobs_tab)
    wait_for(browser, lambda d: cells(row)["status"] == "cancelled", "the cancelled training on the jobs page")
    wait_for(browser, lambda d: cells(f'#jobs tr[data-job="{short["job_id"]}"]')["percent"] == "100%",
             "the queued cohort's job to finish on the jobs page")
    assert site.wait_job(long["job_id"])["status"] == "cancelled"
    assert site.wait_job(short["job_id"])["status"] == "succeeded"
    shot(browser, "jobs")


def test_volume_shows_three_slices_with_slider_window_and_mask(browser, site: Site) -> None:
    """A 3D cohort written the way the worker writes one (sample dir + Sample rows), since
    training a 3D generator is beyond this module's budget: each depth slice has its own level,
    so the axial canvas shows which slice it draws; one voxel carries the mask."""
    from selenium.webdriver.common.by import By

    cohort_id = _volume_cohort(site)
    sign_in(browser, site, "reviewer", f"/ui/cohorts/{cohort_id}")
    canvas = "#detail .plane-axial"
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, canvas), "the axial slice")
    for plane in ("axial", "coronal", "sagittal"):
        assert browser.find_elements(By.CSS_SELECTOR, f"#detail .plane-{plane}"), plane

    def pixel(css: str, x: int, y: int) -> list[int]:
        return browser.execute_script(
            "const c = document.querySelector(arguments[0]);"
            "return Array.from(c.getContext('2d').getImageData(arguments[1], arguments[2], 1, 1).data);", css, x, y)

    def slide(css: str, value: int) -> None:
        browser.execute_script("const s = document.querySelector(arguments[0]); s.value = arguments[1];"
                               "s.dispatchEvent(new Event('input', {bubbles: true}));", css, value)

    assert pixel(canvas, 0, 0)[:3] == [120, 120, 120]  # the middle slice (3 of 6): level 3 · 40
    slide("#detail .slice-axial", 5)
    assert pixel(canvas, 0, 0)[:3] == [200, 200, 200]
    assert "axial 6 / 6" in text_of(browser, "#detail .slice-view")
    slide("#detail .slice-axial", 1)
    masked = pixel(canvas, 3, 2)
    assert masked[0] > masked[1] + 50, masked  # the mask voxel is tinted red
    browser.find_element(By.ID, "mask-overlay").click()
    assert pixel(canvas, 3, 2)[:3] == [40, 40, 40]
    slide("#window", 50)  # window 50 %, level 50 %: 40/255 lies below the window
    assert pixel(canvas, 3, 2)[:3] == [0, 0, 0]
    coronal = pixel("#detail .plane-coronal", 0, 5)  # coronal rows run along depth
    assert coronal[:3] == [255, 255, 255]  # 200/255 is above the window's top
    shot(browser, "review-volume")


def _volume_cohort(site: Site) -> str:
    import json

    from synthcohort.imaging.sample_dir import write_sample_dir
    from synthcohort.store.db import Cohort, CohortStatus, Verdict, session_factory
    from synthcohort.workers.tasks import sample_rows

    cohort_id = "coh-volume" + secrets.token_hex(4)
    images = np.zeros((6, 1, 6, 12, 10), np.float32)
    images[:] = (np.arange(6, dtype=np.float32) * 40.0 / 255.0)[None, None, :, None, None]
    masks = np.zeros((6, 1, 6, 12, 10), np.uint8)
    masks[:, 0, 1, 2, 3] = 1
    root = site.home / "cohorts" / cohort_id
    write_sample_dir(root / "samples", images, masks=masks, class_name="malignant", seed=1, model_id=site.model_id)
    report = {"verdict": "needs_review", "reasons": ["volume fixture"], "metrics": {}, "warnings": [],
              "samples": [{"index": i, "file": f"images/{i:06d}.nii.gz",
                           "flags": [{"kind": "outlier", "reason": "fixture", "score": 2.0}] if i < 2 else []}
                          for i in range(6)], "details": {}}
    (root / "report").mkdir(parents=True)
    (root / "report" / "report.json").write_text(json.dumps(report))
    with session_factory(site.db_url)() as s:
        base = s.get(Cohort, site.review_id)
        s.add(Cohort(id=cohort_id, dataset_id=base.dataset_id, model_id=site.model_id, class_name="malignant",
                     generator="wgan-gp", count=6, seed=1, format="nifti", status=CohortStatus.ready,
                     verdict=Verdict.needs_review, reasons=report["reasons"], owner_id=site.key_ids["admin"]))
        s.flush()
        s.add_all(sample_rows(cohort_id, root / "samples", report))
        s.commit()
    return cohort_id
