"""Events by type and time: the newest event of a type (liveness conditions, status).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 14:06:19.562323
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_type_recorded_at", ["type", "recorded_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_type_recorded_at")
