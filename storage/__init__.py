"""Persistence: SQLAlchemy models, engine setup, the repository (all SQL) and Alembic migrations."""
