"""Running Alembic from code: ``preflight migrate``, the demo, and the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config


def _project_file(name: str) -> Path:
    """``alembic.ini`` / ``migrations`` beside the source tree, else in the working directory
    (the container image copies them to its working directory)."""
    beside_source = Path(__file__).resolve().parents[2] / name
    return beside_source if beside_source.exists() else Path.cwd() / name


def alembic_config(url: str) -> Config:
    config = Config(str(_project_file("alembic.ini")))
    config.set_main_option("script_location", str(_project_file("migrations")))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url``. Synchronous; it runs its own event loop."""
    command.upgrade(alembic_config(url), revision)
