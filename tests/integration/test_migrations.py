"""The schema changes only through Alembic: models and migrations agree."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from integrator import migrate
from integrator.models import Base
from integrator.settings import Settings


def test_models_and_migrations_agree(engine: Engine) -> None:
    """Autogenerate against a database at head finds nothing to change."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_migrations_downgrade_to_base_and_upgrade_again(settings: Settings, engine: Engine) -> None:
    """Every migration can be undone and redone."""
    from alembic import command

    config = migrate.alembic_config(settings)
    command.downgrade(config, "base")
    assert migrate.current_revision(engine) is None
    command.upgrade(config, "head")
    assert migrate.current_revision(engine) == migrate.head_revision(settings)
