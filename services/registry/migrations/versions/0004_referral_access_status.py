"""referral access by state: the referral's status and completion time replace `active`,
so that a completed referral's read access ends 30 days after completion (read time); the
children's place key (listed commune / village) indexed for the area filter

Revision ID: 0004_referral_access_status
Revises: 0003_job_runs
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_referral_access_status"
down_revision: str | None = "0003_job_runs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "referral_access",
        sa.Column("status", sa.String(length=10), nullable=False, server_default="accepted"),
        schema="registry",
    )
    op.add_column(
        "referral_access",
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        schema="registry",
    )
    # What `active` said: an access granted stays an accepted referral until the next
    # event of that referral says otherwise; a withdrawn one gives nothing any more.
    op.execute("UPDATE registry.referral_access SET status = 'cancelled' WHERE NOT active")
    op.alter_column("referral_access", "status", server_default=None, schema="registry")
    op.drop_column("referral_access", "active", schema="registry")
    # libs.common.access matches areas against `<commune>/<village>`, the listed commune
    # first; the old index on place_code (village code first) no longer serves that filter.
    op.execute(
        "CREATE INDEX ix_registry_children_place_key ON registry.children"
        " (((commune_code || '/') || coalesce(village_code, '')) text_pattern_ops)"
    )


def downgrade() -> None:
    op.drop_index("ix_registry_children_place_key", table_name="children", schema="registry")
    op.add_column(
        "referral_access",
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.false()),
        schema="registry",
    )
    op.execute("UPDATE registry.referral_access SET active = status IN ('accepted', 'completed')")
    op.alter_column("referral_access", "active", server_default=None, schema="registry")
    op.drop_column("referral_access", "completed_at", schema="registry")
    op.drop_column("referral_access", "status", schema="registry")
