"""Reviews carry a reason code (near_copy, artefact, implausible_anatomy, wrong_class, other)
beside the free-text reason, and ``reset`` joins approve/reject as a decision (undo → back to
pending); the decision column already holds up to 10 characters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('reviews') as batch:
        batch.add_column(sa.Column('reason_code', sa.String(length=30), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reviews') as batch:
        batch.drop_column('reason_code')
