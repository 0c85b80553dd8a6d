"""Persistence: SQLAlchemy 2 async models, the unit of work and Alembic migrations.

The database is the source of truth for each item's state and history; the bus only carries
notifications. Runs on PostgreSQL in production and SQLite embedded.
"""

from .engine import create_engine, migrate, session_factory
from .models import (
    AuditEntry,
    Base,
    EsdhCase,
    EsdhDocument,
    InboxEntry,
    Item,
    ItemTransition,
    OutboxMessage,
    Receipt,
    SourceMessage,
)
from .uow import UnitOfWork, UnitOfWorkFactory, uow_factory

__all__ = [
    "AuditEntry",
    "Base",
    "EsdhCase",
    "EsdhDocument",
    "InboxEntry",
    "Item",
    "ItemTransition",
    "OutboxMessage",
    "Receipt",
    "SourceMessage",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "create_engine",
    "migrate",
    "session_factory",
    "uow_factory",
]
