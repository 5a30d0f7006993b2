"""Schemathesis against ``/openapi.json`` (issue 20): every operation, 20 generated requests
each that fit the schema and 20 that break it (``derandomize``: the same every run), sent with
each role's key (requester, reviewer, admin) through the real app on its real database. Zero
5xx (the test client re-raises any server error), and every 4xx is a JSON body with a
``detail``. The API only enqueues jobs (to this session's Redis DB, where no worker listens), so
the POSTs that would train start nothing; offline, about 15 s."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.api_fixtures import Api

ROLES = ("alice", "reviewer", "admin")
EXAMPLES = 20


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_operation_answers_5xx_to_any_role(api: Api, dataset_id: str, synthcohort_home: Path) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    failures: list[str] = []
    calls = {"n": 0}

    def fuzz(operation, mode: GenerationMode, **known) -> None:
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode, **known))
        def probe(case) -> None:
            for who in ROLES:
                headers = {"X-API-Key": api.keys[who], "Idempotency-Key": uuid.uuid4().hex}
                response = case.call(headers=headers)
                calls["n"] += 1
                where = f"{operation.method.upper()} {operation.path} as {who}: {response.status_code}"
                if response.status_code >= 500:
                    failures.append(f"{where} {response.text[:300]} for {case.as_curl_command()[:500]}")
                elif response.status_code >= 400:
                    try:
                        body = response.json()
                    except ValueError:
                        failures.append(f"{where} without a JSON body")
                        continue
                    if not isinstance(body, dict) or not body.get("detail"):
                        failures.append(f"{where} without a detail: {body!r:.200}")

        try:
            probe()
        except Unsatisfiable:  # nothing of it can break the schema (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE, operation.path

    for operation in operations:
        fuzz(operation, GenerationMode.POSITIVE)
        fuzz(operation, GenerationMode.NEGATIVE)  # bodies, queries and ids that break the schema
        if "{dataset_id}" in operation.path:  # and a dataset that exists (shared: every role sees it)
            fuzz(operation, GenerationMode.POSITIVE, path_parameters={"dataset_id": dataset_id})
    assert not failures, "\n".join(failures[:20])
    print(f"{len(operations)} operations, {calls['n']} calls")
    assert calls["n"] >= len(operations) * len(ROLES)
