"""The lockbox's film log: each film scored in a part of an external sample, append-only in the database itself.

Revision ID: 0006
Revises: 0005

SQLite alters a table by copying it (batch mode), which drops its triggers: a later migration that alters
lockbox_films must create them again (see _append_only).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APPEND_ONLY = "the lockbox film log is append-only"


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
    _append_only()


def _append_only() -> None:
    """As the audit log's (0001): UPDATE and DELETE (and TRUNCATE on PostgreSQL) of its rows abort."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER lockbox_films_no_{verb.lower()} BEFORE {verb} ON lockbox_films "
                       f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END")
        return
    op.execute("CREATE FUNCTION medcore_lockbox_append_only() RETURNS trigger LANGUAGE plpgsql AS "
               f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$")
    op.execute("CREATE TRIGGER lockbox_films_no_change BEFORE UPDATE OR DELETE ON lockbox_films "
               "FOR EACH ROW EXECUTE FUNCTION medcore_lockbox_append_only()")
    op.execute("CREATE TRIGGER lockbox_films_no_truncate BEFORE TRUNCATE ON lockbox_films "
               "FOR EACH STATEMENT EXECUTE FUNCTION medcore_lockbox_append_only()")
