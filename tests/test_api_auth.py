"""Access control: 401 without/with an unknown or revoked key, 403 for the wrong role, JSON
error bodies everywhere (TestClient; SQLite and PostgreSQL)."""

from __future__ import annotations

from tests.api_fixtures import Api


def test_no_key_unknown_key_and_revoked_key_are_401_json(api: Api) -> None:
    from synthcohort.api.keys import revoke_api_key

    for headers in ({}, {"X-API-Key": "sck_not-a-key"}):
        r = api.client.get("/v1/cohorts", headers=headers)
        assert r.status_code == 401
        body = r.json()
        assert body["error"] == "Unauthenticated" and body["field"] == "X-API-Key" and body["detail"]
    assert api.get("/v1/cohorts", "bob").status_code == 200
    with api.session() as s:
        revoke_api_key(s, api.key_ids["bob"])
    r = api.get("/v1/cohorts", "bob")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    # 401 comes before any body or Idempotency-Key checks
    assert api.client.post("/v1/models", json={}).status_code == 401


def test_wrong_role_is_403_and_server_paths_are_for_admins(api: Api, tmp_path) -> None:
    r = api.post("/v1/cohorts/coh-x/samples/0/review", "alice", {"decision": "approve"})
    assert r.status_code == 403 and r.json()["error"] == "Forbidden" and "reviewer" in r.json()["detail"]
    for who in ("alice", "reviewer"):
        r = api.post("/v1/datasets", who, {"path": str(tmp_path)})
        assert r.status_code == 403 and r.json()["field"] == "path"
    assert api.counts()["jobs"] == 0
    # an admin gets past the role check; the path itself is then checked
    r = api.post("/v1/datasets", "admin", {"path": str(tmp_path / "missing.npz")})
    assert r.status_code == 422 and r.json()["path"].endswith("missing.npz")


def test_unknown_routes_and_objects_are_json_404(api: Api) -> None:
    r = api.get("/v1/nothing-here", "alice")
    assert r.status_code == 404 and r.json()["error"] == "NotFound"
    for path, field in (("/v1/cohorts/coh-404", "cohort_id"), ("/v1/models/mdl-404", "model_id"),
                        ("/v1/jobs/job-404", "job_id"), ("/v1/datasets/ds-404", "dataset_id")):
        r = api.get(path, "admin")
        assert r.status_code == 404 and r.json()["field"] == field, path


def test_openapi_document_and_docs_are_served(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    assert "/v1/cohorts/{cohort_id}/samples/{index}/review" in doc["paths"]
    assert "APIKeyHeader" in doc["components"]["securitySchemes"]
    assert api.client.get("/docs").status_code == 200
    health = api.client.get("/v1/health").json()
    from synthcohort.store.migrate import head_revision

    # no worker runs beside this API: the broker (embedded, a file) answers, nobody works
    assert health == {"status": "degraded", "database_revision": head_revision(), "broker_reachable": True,
                      "workers": []}
