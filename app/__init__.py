"""zoorank's HTTP API (FastAPI), settings and database. Thin: the work is in ``zoorank``."""
