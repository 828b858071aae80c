"""The tables of the first shared store: registry, accounts and sign-in throttle, jobs, audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = "the audit log is append-only"


def upgrade() -> None:
    op.create_table(
        "versions",
        sa.Column("task", sa.String(64), nullable=False), sa.Column("version", sa.String(128), nullable=False),
        sa.Column("folder", sa.Text, nullable=False), sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False), sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("manifest", sa.Text, nullable=False), sa.Column("summary", sa.Text, nullable=False),
        sa.Column("discarded_at", sa.Float),
        sa.PrimaryKeyConstraint("task", "version", name="pk_versions"))
    op.create_table(
        "production",
        sa.Column("task", sa.String(64), nullable=False), sa.Column("version", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("task", name="pk_production"))
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("task", sa.String(64), nullable=False), sa.Column("version", sa.String(128), nullable=False),
        sa.Column("previous", sa.String(128)), sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False), sa.Column("action", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_promotions"))
    op.create_index("ix_promotions_task_id", "promotions", ["task", "id"])
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), nullable=False), sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(128), nullable=False), sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False), sa.Column("disabled_at", sa.Float),
        sa.CheckConstraint("role IN ('clinician', 'admin')", name="ck_users_role"),
        sa.PrimaryKeyConstraint("name", name="pk_users"))
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("client", sa.String(256), nullable=False), sa.Column("name", sa.String(256), nullable=False),
        sa.Column("at", sa.Float, nullable=False), sa.PrimaryKeyConstraint("id", name="pk_sign_in_failures"))
    op.create_index("ix_sign_in_failures_name_at", "sign_in_failures", ["name", "at"])
    op.create_index("ix_sign_in_failures_client_at", "sign_in_failures", ["client", "at"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), nullable=False), sa.Column("task", sa.String(64), nullable=False),
        sa.Column("data_path", sa.Text, nullable=False), sa.Column("data_label", sa.Text, nullable=False),
        sa.Column("options", sa.Text, nullable=False), sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False), sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float), sa.Column("finished_at", sa.Float), sa.Column("pid", sa.Integer),
        sa.Column("cancel_requested", sa.Boolean, nullable=False), sa.Column("candidate_version", sa.String(128)),
        sa.Column("error", sa.Text), sa.Column("host", sa.String(256)), sa.Column("lease_expires_at", sa.Float),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"))
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False), sa.Column("at", sa.Float, nullable=False),
        sa.Column("event", sa.Text, nullable=False), sa.PrimaryKeyConstraint("id", name="pk_job_events"))
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False), sa.Column("at", sa.Float, nullable=False),
        sa.Column("user", sa.String(128), nullable=False), sa.Column("action", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128)), sa.Column("outcome", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text, nullable=False), sa.Column("server", sa.String(256)),
        sa.PrimaryKeyConstraint("id", name="pk_audit"))
    op.create_index("ix_audit_action_at", "audit", ["action", "at"])
    _append_only_audit()


def _append_only_audit() -> None:
    """Enforced by the database, not only by the code: UPDATE and DELETE (and TRUNCATE) of audit rows abort."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_no_{verb.lower()} BEFORE {verb} ON audit "
                       f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END")
        return
    op.execute("CREATE FUNCTION medcore_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
               f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$")
    op.execute("CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit "
               "FOR EACH ROW EXECUTE FUNCTION medcore_audit_append_only()")
    op.execute("CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
               "FOR EACH STATEMENT EXECUTE FUNCTION medcore_audit_append_only()")
