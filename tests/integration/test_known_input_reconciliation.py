"""The crash trials' reconciliation (``tests/reliability.py``) can fail: on a loaded known input it accounts for
every record, and each way of breaking the warehouse behind the platform's back shows under its own name."""

from sqlalchemy import text

from tests.harness import pipeline
from tests.reliability import reconcile, shop_input

DOUBLE = text(
    "INSERT INTO events (event_id, occurred_at, event_type, person_id, source, batch_id, content_hash, ingested_at) "
    "SELECT :new_id, occurred_at + interval '1 second', event_type, person_id, source, batch_id, content_hash, "
    "ingested_at FROM events WHERE event_id = :id"
)
FORGET_QUARANTINE = text(
    "DELETE FROM quarantine WHERE position(:marker in "
    "coalesce(payload::text, '') || coalesce(convert_from(raw_record, 'UTF8'), '')) > 0"
)


def test_reconciliation_accounts_for_every_record_and_names_each_breakage(definitions, s3, buckets, warehouse_engine):
    known = shop_input(seed=5, events=150)
    s3.put_object(Bucket=buckets["landing"], Key="landing/2025-08-01/known.jsonl", Body=known.jsonl())
    with pipeline(definitions) as platform:
        platform.settle()

    clean = reconcile(warehouse_engine, known)
    assert clean.problems == []
    assert clean.in_events == len(known.expected_events())
    assert clean.quarantined == len(known.quarantined()) > 0
    assert clean.superseded > 0
    assert len(known.links()) > 0
    assert clean.in_events + clean.quarantined + clean.superseded == clean.records == len(known.records)

    lost, doubled, changed, moved = sorted(known.expected_events())[:4]
    bad = known.quarantined()[0]
    unlinked = sorted(known.links())[0]
    with warehouse_engine.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE event_id = :id"), {"id": lost})
        conn.execute(DOUBLE, {"id": doubled, "new_id": doubled})
        conn.execute(DOUBLE, {"id": changed, "new_id": "never-sent"})
        conn.execute(text("UPDATE events SET session_id = 'someone else' WHERE event_id = :id"), {"id": changed})
        conn.execute(FORGET_QUARANTINE, {"marker": f'"{bad.ref}"'})
        conn.execute(text("UPDATE events SET person_id = 'somebody' WHERE event_id = :id"), {"id": moved})
        conn.execute(text("DELETE FROM identity_links WHERE anonymous_id = :id"), {"id": unlinked})

    broken = reconcile(warehouse_engine, known)
    assert lost in broken.lost
    assert doubled in broken.doubled
    assert any(item.startswith(changed) for item in broken.wrong)
    assert "never-sent" in broken.extra
    assert any(item.startswith(bad.ref) for item in broken.lost)
    assert any(item.startswith(f"{moved} belongs to person somebody") for item in broken.wrong)
    assert any(item.startswith(f"identity link ('{unlinked}'") for item in broken.lost)
    assert broken.platform, "the platform's own reconciliation balanced a broken warehouse"
