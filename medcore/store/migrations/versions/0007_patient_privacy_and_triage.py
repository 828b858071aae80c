"""Every look at a patient recorded (access_log, append-only), confirmations kept as history (append-only) without
UIDs in clear, administrators' settings, and MedCore's own results told from copies (unverified_reports).

Existing confirmations are carried over: their UIDs become a keyed digest and a sealed copy (medcore.keyed), the
rows in clear are dropped. Studies recorded as "reported before" without a figure (the old rule took any "MedCore"
report for MedCore's own) are put back to be examined again: the new rule verifies the report or analyses the study.

Revision ID: 0007
Revises: 0006
"""

import json

import sqlalchemy as sa
from alembic import op

from medcore.store.migrations.append_only import append_only

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None



def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), nullable=False), sa.Column("value", sa.Text, nullable=False),
        sa.Column("changed_at", sa.Float, nullable=False), sa.Column("changed_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_settings"))

    with op.batch_alter_table("pacs_studies") as batch:
        batch.add_column(sa.Column("unverified_reports", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE pacs_studies SET status = 'retry', attempts = 0 "
               "WHERE outcome = 'reported before' AND probability IS NULL")
    _feedback_as_history()
    op.create_table(
        "access_log",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False), sa.Column("at", sa.Float, nullable=False),
        sa.Column("user", sa.String(128), nullable=False), sa.Column("action", sa.String(32), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("accession_key", sa.String(64), nullable=False), sa.Column("server", sa.String(256)),
        sa.PrimaryKeyConstraint("id", name="pk_access_log"))
    op.create_index("ix_access_log_patient_key_at", "access_log", ["patient_key", "at"])
    op.create_index("ix_access_log_accession_key", "access_log", ["accession_key"])
    append_only("access_log")


def _feedback_as_history() -> None:
    from medcore import keyed

    bind = op.get_bind()  # the installation secret is checked against this store through the same connection
    old = bind.execute(sa.text("SELECT sop_instance_uid, study_uid, series_uid, label, model_version, probability, "
                               "decision, actor, at FROM pacs_feedback ORDER BY at")).mappings().all()
    op.drop_table("pacs_feedback")
    table = op.create_table(
        "pacs_feedback",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("film_key", sa.String(64), nullable=False), sa.Column("sealed_uids", sa.Text, nullable=False),
        sa.Column("label", sa.String(32), nullable=False), sa.Column("model_version", sa.String(128)),
        sa.Column("probability", sa.Float), sa.Column("decision", sa.String(32)),
        sa.Column("actor", sa.String(128), nullable=False), sa.Column("at", sa.Float, nullable=False),
        sa.Column("supersedes", sa.Integer),
        sa.PrimaryKeyConstraint("id", name="pk_pacs_feedback"))
    op.create_index("ix_pacs_feedback_film_key_id", "pacs_feedback", ["film_key", "id"])
    append_only("pacs_feedback")  # a later confirmation supersedes; none is changed or erased
    if old:
        op.bulk_insert(table, [{
            "film_key": keyed.digest("film", row["sop_instance_uid"], connection=bind),
            "sealed_uids": keyed.seal(json.dumps([row["study_uid"], row["series_uid"], row["sop_instance_uid"]]),
                                      connection=bind),
            **{key: row[key] for key in ("label", "model_version", "probability", "decision", "actor", "at")},
            "supersedes": None} for row in old])

