"""drop the (commune, sex, birth date) index: duplicate candidates are found through the
name keys' GIN index, and the planner, not knowing which commune a registration names,
preferred this one: in a commune of 20,000 children each registration read over a
thousand rows through it (about 20 ms) instead of a few dozen through the name keys

Revision ID: 0006_drop_dupes_index
Revises: 0005_name_keys
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_drop_dupes_index"
down_revision: str | None = "0005_name_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_registry_children_dupes", table_name="children", schema="registry")


def downgrade() -> None:
    op.create_index(
        "ix_registry_children_dupes",
        "children",
        ["commune_code", "sex", "birth_date"],
        schema="registry",
    )
