"""The Alembic migrations build exactly the schema of the SQLAlchemy models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.db.models import Base
from app.db.session import current_revision, get_engine, upgrade


def test_upgrade_matches_models(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    upgrade(url)
    assert current_revision(url) is not None
    with get_engine(url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    upgrade(url)  # idempotent
