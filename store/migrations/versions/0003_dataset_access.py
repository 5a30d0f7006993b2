"""Datasets get owners' grants and a ``shared`` flag: a requester sees a dataset version they
imported (a grant, one per importer: versions are content addressed, so two people may upload
the same data) or one an admin shared; ``shared_by``/``shared_at`` record who shared it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('datasets') as batch:
        batch.add_column(sa.Column('shared', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('shared_by', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('shared_at', sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key('fk_datasets_shared_by', 'api_keys', ['shared_by'], ['id'])
    op.create_table(
        'dataset_grants',
        sa.Column('dataset_id', sa.String(length=40), nullable=False),
        sa.Column('key_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ),
        sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], ),
        sa.PrimaryKeyConstraint('dataset_id', 'key_id'),
    )
    # Existing rows: their recorded owner keeps access.
    op.execute("INSERT INTO dataset_grants (dataset_id, key_id, created_at) "
               "SELECT id, owner_id, created_at FROM datasets WHERE owner_id IS NOT NULL")


def downgrade() -> None:
    op.drop_table('dataset_grants')
    with op.batch_alter_table('datasets') as batch:
        batch.drop_constraint('fk_datasets_shared_by', type_='foreignkey')
        batch.drop_column('shared_at')
        batch.drop_column('shared_by')
        batch.drop_column('shared')
