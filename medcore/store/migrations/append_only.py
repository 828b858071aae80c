"""The append-only rule, enforced by the database itself on both engines, for the migrations that create such a
table (the audit log's first, in 0001, spelled out there): UPDATE and DELETE abort (and TRUNCATE on PostgreSQL).
SQLite connections run with recursive_triggers on (medcore.store), so the delete an INSERT OR REPLACE makes aborts
too."""

from __future__ import annotations

from alembic import op


def append_only(table: str) -> None:
    message = f"{table} is append-only"
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
        return
    op.execute(f"CREATE FUNCTION medcore_{table}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
               f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$")
    op.execute(f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
               f"FOR EACH ROW EXECUTE FUNCTION medcore_{table}_append_only()")
    op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
               f"FOR EACH STATEMENT EXECUTE FUNCTION medcore_{table}_append_only()")
