"""Alembic migrations of the zoorank database, shipped as a package so a wheel can upgrade too."""
