"""Review of flagged samples. Approve → ``released``, reject → ``rejected``, reset → back to
``held`` (the undo of either, as in Encord's "reset to pending"); each decision is a ``reviews``
row (decision, reason code, reason, reviewer id and name, time): the audit trail, which a
reset extends and never edits.

Nothing of a cohort that failed validation can be released, and unflagged samples are not
reviewed (both 409). The state change is a conditional UPDATE (``WHERE state = <the state it
was read in>``) so two reviewers deciding at once cannot both win. A reset cannot call back
copies of a sample that were downloaded while it was released; the trail shows that it was.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from synthcohort.api.deps import PageParams
from synthcohort.api.errors import Conflict
from synthcohort.api.schemas import ReviewCreate
from synthcohort.api.services.cohorts import get_cohort, get_sample, review_view, sample_view
from synthcohort.api.services.jobs import request_hash
from synthcohort.api.services.pagination import paginate
from synthcohort.store.db import (
    ApiKey,
    CohortStatus,
    Review,
    Sample,
    SampleState,
    Verdict,
)

DECISION_STATE = {"approve": SampleState.released, "reject": SampleState.rejected, "reset": SampleState.held}


def _replay(session: Session, key: ApiKey, idem: str, req_hash: str) -> Review | None:
    review = session.scalar(select(Review).where(Review.reviewer_id == key.id, Review.idempotency_key == idem))
    if review is not None and review.request_hash != req_hash:
        raise Conflict("this Idempotency-Key was already used with a different request; use a new key",
                       field="Idempotency-Key")
    return review


def _transition(sample: Sample, decision: str, index: int) -> tuple[SampleState, SampleState]:
    """(state it must be in, state it goes to); 409 when the decision does not apply."""
    if decision == "reset":
        if sample.state == SampleState.held:
            raise Conflict(f"sample {index} is held (pending); there is no decision to undo", field="index")
        return sample.state, SampleState.held
    if sample.state != SampleState.held:
        raise Conflict(f"sample {index} was already reviewed ({sample.state.value}); reset it first",
                       field="index")
    return SampleState.held, DECISION_STATE[decision]


def list_reviews(session: Session, key: ApiKey, cohort_id: str, page: PageParams) -> dict[str, Any]:
    """The cohort's audit trail, newest decision first."""
    cohort = get_cohort(session, key, cohort_id)
    query = (select(Review).join(Sample, Review.sample_id == Sample.id).where(Sample.cohort_id == cohort.id)
             .options(selectinload(Review.sample)).order_by(Review.id.desc()))
    return paginate(session, query, page, lambda r: {**review_view(r), "index": r.sample.index})


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
    before, after = _transition(sample, body.decision, index)
    res = session.execute(
        update(Sample).where(Sample.id == sample.id, Sample.state == before).values(state=after)
    )
    if res.rowcount != 1:
        session.rollback()
        if (previous := _replay(session, key, idem, req_hash)) is not None:  # our own retry won
            return sample_view(previous.sample, key)
        raise Conflict(f"sample {index} was reviewed by someone else just now", field="index")
    session.add(Review(sample_id=sample.id, decision=body.decision, reason_code=body.reason_code,
                       reason=body.reason, reviewer_id=key.id, reviewer_name=key.name, idempotency_key=idem,
                       request_hash=req_hash))
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
