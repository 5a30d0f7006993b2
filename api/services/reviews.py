"""Review of flagged samples. Approve → ``released``, reject → ``rejected``; each decision is
a ``reviews`` row (decision, reason, reviewer id and name, time): the audit trail.

Nothing of a cohort that failed validation can be released, and unflagged samples are not
reviewed (both 409). The state change is a conditional UPDATE (``WHERE state = 'held'``) so
two reviewers deciding at once cannot both win.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from synthcohort.api.errors import Conflict
from synthcohort.api.schemas import ReviewCreate
from synthcohort.api.services.cohorts import get_cohort, get_sample, sample_view
from synthcohort.api.services.jobs import request_hash
from synthcohort.store.db import (
    ApiKey,
    CohortStatus,
    Review,
    Sample,
    SampleState,
    Verdict,
)

DECISION_STATE = {"approve": SampleState.released, "reject": SampleState.rejected}


def _replay(session: Session, key: ApiKey, idem: str, req_hash: str) -> Review | None:
    review = session.scalar(select(Review).where(Review.reviewer_id == key.id, Review.idempotency_key == idem))
    if review is not None and review.request_hash != req_hash:
        raise Conflict("this Idempotency-Key was already used with a different request; use a new key",
                       field="Idempotency-Key")
    return review


def review_sample(session: Session, key: ApiKey, cohort_id: str, index: int, body: ReviewCreate,
                  idem: str) -> dict[str, Any]:
    """Record a decision on a held sample; returns the sample's view with its reviews."""
    req_hash = request_hash("review", {"cohort_id": cohort_id, "index": index, **body.model_dump()})
    if (previous := _replay(session, key, idem, req_hash)) is not None:
        return sample_view(previous.sample, key)
    cohort = get_cohort(session, key, cohort_id)
    sample = get_sample(session, key, cohort_id, index)
    if cohort.status != CohortStatus.ready or cohort.verdict is None:
        raise Conflict(f"cohort {cohort.id} is {cohort.status.value}; review after validation", field="cohort_id")
    if cohort.verdict == Verdict.failed:
        raise Conflict(f"cohort {cohort.id} failed validation; its samples cannot be released", field="cohort_id")
    if not sample.flags:
        raise Conflict(f"sample {index} was not flagged; there is nothing to review", field="index")
    if sample.state != SampleState.held:
        raise Conflict(f"sample {index} was already reviewed ({sample.state.value})", field="index")
    res = session.execute(
        update(Sample).where(Sample.id == sample.id, Sample.state == SampleState.held)
        .values(state=DECISION_STATE[body.decision])
    )
    if res.rowcount != 1:
        session.rollback()
        if (previous := _replay(session, key, idem, req_hash)) is not None:  # our own retry won
            return sample_view(previous.sample, key)
        raise Conflict(f"sample {index} was reviewed by someone else just now", field="index")
    session.add(Review(sample_id=sample.id, decision=body.decision, reason=body.reason, reviewer_id=key.id,
                       reviewer_name=key.name, idempotency_key=idem, request_hash=req_hash))
    try:
        session.commit()
    except IntegrityError:  # the same Idempotency-Key raced in twice
        session.rollback()
        if (previous := _replay(session, key, idem, req_hash)) is not None:
            return sample_view(previous.sample, key)
        raise
    session.refresh(sample)
    session.expire(sample, ["reviews"])
    return sample_view(sample, key)
