"""the outbox's position in the change feed, given as the relay first claims a row

Revision ID: 0007_feed_positions
Revises: 0006_drop_dupes_index
"""

from collections.abc import Sequence

from libs.common.migrations import add_feed_positions, drop_feed_positions

revision: str = "0007_feed_positions"
down_revision: str | None = "0006_drop_dupes_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_feed_positions("registry")


def downgrade() -> None:
    drop_feed_positions("registry")
