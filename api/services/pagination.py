"""Offset/limit pages over a SQLAlchemy select, with the total count of the unpaged query."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from synthcohort.api.deps import PageParams


def paginate(session: Session, query: Select, page: PageParams, render: Callable[[Any], Any]) -> dict[str, Any]:
    """``{"items", "total", "offset", "limit"}``; ``query`` must already be ordered."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = session.scalars(query.offset(page.offset).limit(page.limit)).all()
    return {"items": [render(r) for r in rows], "total": int(total), "offset": page.offset, "limit": page.limit}
