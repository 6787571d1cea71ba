"""job_models: whether the cpu stage had to make the forward pass again (features evicted)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_models") as batch_op:
        batch_op.add_column(sa.Column("features_recomputed", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_models") as batch_op:
        batch_op.drop_column("features_recomputed")
