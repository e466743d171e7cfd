"""Liveness condition states: one row per condition of a repository.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 13:42:30.788053
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "condition_states",
        sa.Column("repository", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("repository", "code", name=op.f("pk_condition_states")),
    )


def downgrade() -> None:
    op.drop_table("condition_states")
