"""SQLAlchemy 2 models, engine/session handling and the queries (one place for each)."""
