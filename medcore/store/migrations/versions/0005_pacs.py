"""PACS studies MedCore has claimed or analysed, the watcher's cursor, and clinicians' confirmed findings.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pacs_studies",
        sa.Column("study_key", sa.String(64), nullable=False), sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False), sa.Column("outcome", sa.String(64)),
        sa.Column("probability", sa.Float), sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text), sa.Column("claimed_by", sa.String(256)),
        sa.Column("claimed_at", sa.Float), sa.Column("finished_at", sa.Float), sa.Column("seen_at", sa.Float),
        sa.PrimaryKeyConstraint("study_key", "model_version", name="pk_pacs_studies"))
    op.create_table(
        "pacs_state",
        sa.Column("key", sa.String(64), nullable=False), sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_pacs_state"))
    op.create_table(
        "pacs_feedback",
        sa.Column("sop_instance_uid", sa.String(128), nullable=False),
        sa.Column("study_uid", sa.String(128), nullable=False), sa.Column("series_uid", sa.String(128), nullable=False),
        sa.Column("label", sa.String(32), nullable=False), sa.Column("model_version", sa.String(128)),
        sa.Column("probability", sa.Float), sa.Column("decision", sa.String(32)),
        sa.Column("actor", sa.String(128), nullable=False), sa.Column("at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("sop_instance_uid", name="pk_pacs_feedback"))
