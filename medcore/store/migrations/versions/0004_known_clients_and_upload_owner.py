"""Addresses that signed a name in before (exempt from the name-wide sign-in delay), and which job owns an upload.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "known_clients",
        sa.Column("name", sa.String(64), nullable=False), sa.Column("client", sa.String(256), nullable=False),
        sa.Column("last_success_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("name", "client", name="pk_known_clients"))
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("owns_upload", sa.Boolean, nullable=False, server_default=sa.false()))
