"""Where each pull source resumes: its cursor in ``source_cursors``, moved in the transaction that stages the page
it follows."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text

LOAD_CURSOR = text("SELECT cursor FROM source_cursors WHERE source = :source")
SAVE_CURSOR = text(
    "INSERT INTO source_cursors (source, cursor, updated_at) VALUES (:source, :cursor, :updated_at) "
    "ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at"
)


def load_cursor(engine: Engine, source: str) -> str | None:
    with engine.connect() as conn:
        cursor: str | None = conn.scalar(LOAD_CURSOR, {"source": source})
        return cursor


def save_cursor(conn: Connection, source: str, cursor: str | None) -> None:
    """Saves ``cursor`` as ``source``'s, inside the caller's transaction."""
    conn.execute(SAVE_CURSOR, {"source": source, "cursor": cursor, "updated_at": datetime.now(UTC)})
