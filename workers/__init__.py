"""Celery app and tasks. Thin: tasks take ids and call ``app.services``."""
