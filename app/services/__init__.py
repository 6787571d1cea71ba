"""What the service does, as functions over (settings, ids), one module per concern: ranking jobs
(:mod:`.jobs`, :mod:`.runner`), the leaderboard, validation jobs, and the catalogue (uploads,
registered models). The API and the Celery tasks call them; tests run them directly."""
