"""The lockbox's film log: each film scored in a part of an external sample, append-only in the database itself.

Revision ID: 0006
Revises: 0005

SQLite alters a table by copying it (batch mode), which drops its triggers: a later migration that alters
lockbox_films must create them again (medcore.store.migrations.append_only).
"""

import sqlalchemy as sa
from alembic import op

from medcore.store.migrations.append_only import append_only

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lockbox_films",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("film", sa.String(64), nullable=False), sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("part", sa.String(16), nullable=False), sa.Column("at", sa.Float, nullable=False),
        sa.Column("command", sa.Text, nullable=False), sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False), sa.Column("server", sa.String(256)),
        sa.PrimaryKeyConstraint("id", name="pk_lockbox_films"))
    op.create_index("ix_lockbox_films_film_part", "lockbox_films", ["film", "part"])
    append_only("lockbox_films")

