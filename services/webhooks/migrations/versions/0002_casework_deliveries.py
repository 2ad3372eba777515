"""deliveries about a child's casework (assignments, visits, overdue flags, plans): the
record type `casework`

Revision ID: 0002_casework_deliveries
Revises: 0001_webhooks
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_casework_deliveries"
down_revision: str | None = "0001_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ck_deliveries_record_type"


def _check(types: str) -> None:
    op.drop_constraint(_NAME, "deliveries", schema="webhooks", type_="check")
    op.create_check_constraint(
        _NAME, "deliveries", f"record_type IS NULL OR record_type IN ({types})", schema="webhooks"
    )


def upgrade() -> None:
    _check("'child', 'referral', 'grant', 'casework'")


def downgrade() -> None:
    op.execute("DELETE FROM webhooks.deliveries WHERE record_type = 'casework'")
    _check("'child', 'referral', 'grant'")
