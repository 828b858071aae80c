"""The training queue's tables (procrastinate) in a PostgreSQL store; nothing on SQLite, which has no queue.

A later procrastinate release brings its own migration scripts; a MedCore revision applies them when the pinned
version changes.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    from procrastinate.schema import SchemaManager

    op.execute(SchemaManager.get_schema())
