"""Hospital accounts signed in through the hospital's OpenID Provider (issue 33), keyed by issuer and subject.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sso_accounts",
        sa.Column("issuer", sa.String(512), nullable=False), sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("name", sa.String(64), nullable=False), sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16)), sa.Column("first_sign_in_at", sa.Float, nullable=False),
        sa.Column("last_sign_in_at", sa.Float, nullable=False), sa.Column("disabled_at", sa.Float),
        sa.PrimaryKeyConstraint("issuer", "subject", name="pk_sso_accounts"),
        sa.CheckConstraint("role IN ('clinician', 'admin')", name="ck_sso_accounts_sso_role"))
