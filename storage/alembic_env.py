"""What both Alembic environments (the app's and the ledger's) run: synchronous migrations against
the URL `storage.migrate` gives, recording versions in the table the config names."""

from alembic import context
from sqlalchemy import engine_from_config, pool


def run() -> None:
    config = context.config
    version_table = config.get_main_option("version_table") or "alembic_version"
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            literal_binds=True,
            version_table=version_table,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None, version_table=version_table)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
