"""confirmations and confirm_units: the confirmation stage of a ranking job; jobs.confirm

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
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("confirm", sa.JSON(), nullable=True))
    op.create_table(
        "confirmations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_confirmations_job_id", "confirmations", ["job_id"])
    op.create_index("ix_confirmations_status", "confirmations", ["status"])
    op.create_index("ix_confirmations_created_at", "confirmations", ["created_at"])
    op.create_table(
        "confirm_units",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "confirmation_id",
            sa.String(32),
            sa.ForeignKey("confirmations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("rung", sa.Integer(), nullable=False),
        sa.Column("end_epoch", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("epochs_done", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=True),
        sa.Column("val_correct", sa.JSON(), nullable=True),
        sa.Column("diverged", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("runner", sa.String(64), nullable=True),
        sa.Column("resent_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("confirmation_id", "model", "rung", name="uq_confirm_units_confirmation_model_rung"),
    )
    op.create_index("ix_confirm_units_confirmation_id", "confirm_units", ["confirmation_id"])


def downgrade() -> None:
    op.drop_table("confirm_units")
    op.drop_table("confirmations")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("confirm")
