"""Durable state: SQLAlchemy 2 models, the database wrapper and Alembic migrations."""
