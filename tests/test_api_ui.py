"""/ui: the review page's shell, script and style sheet are served with a policy that lets only
this server's own script run and reach only this server; the REST reference leaves them out."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def client() -> TestClient:
    from synthcohort.api.app import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("path", ["/ui/", "/ui/jobs", "/ui/cohorts/coh-0123abcd"])
def test_every_page_is_the_shell_with_a_strict_policy(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    policy = r.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert r.headers["referrer-policy"] == "no-referrer"
    # no inline script, nothing from another origin: the page works offline
    assert re.findall(r"<script[^>]*>", r.text) == ['<script src="/ui/static/ui.js" defer>']
    assert not re.search(r'(src|href)="(https?:)?//', r.text)


def test_assets_and_bad_addresses(client: TestClient) -> None:
    js = client.get("/ui/static/ui.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "sessionStorage" in js.text and "X-API-Key" in js.text
    assert client.get("/ui/static/ui.css").headers["content-type"].startswith("text/css")
    missing = client.get("/ui/static/shell.py")
    assert missing.status_code == 404 and missing.json()["field"] == "name"
    bad = client.get("/ui/cohorts/<script>")
    assert bad.status_code == 422 and bad.json()["field"] == "cohort_id"
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
    assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/ui")]
