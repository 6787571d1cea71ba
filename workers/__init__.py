"""Celery app and tasks. Thin: tasks take ids and call the functions in ``app/services/``."""
