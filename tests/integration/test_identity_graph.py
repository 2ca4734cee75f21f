"""The identity graph on a real PostgreSQL: who each event belongs to, kept by the day's merge."""

import threading
import time
from datetime import date

from sqlalchemy import text

from etl_assets.transform.pii import PiiPolicy, pseudonymize
from etl_assets.warehouse.merge import MergeOptions
from etl_assets.warehouse.merge import merge_day as merge_in
from etl_assets.warehouse.partitions import ensure_event_partitions
from tests.conftest import TEST_PII_KEY
from tests.harness import ACCEPTED, stage_payloads
from tests.harness import merge_day as merge_staged_day

PII = PiiPolicy(key=TEST_PII_KEY.encode())
DAY = date(2025, 8, 1)


def merge_day(engine, day: date = DAY):
    return merge_staged_day(engine, day, pii=PII)


def track(event_id: str, at: str, *, anonymous: str | None = None, user: str | None = None, kind="page_view"):
    ids = {"anonymousId": anonymous} if anonymous else {}
    return {"messageId": event_id, "type": kind, "timestamp": at, **ids, **({"userId": user} if user else {})}


def identify(event_id: str, at: str, user: str, anonymous: str | None = None, **traits) -> dict:
    return {**track(event_id, at, anonymous=anonymous, user=user, kind="identify"), "traits": traits}


def persons(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT event_id, person_id FROM events")).all())


def links(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT anonymous_id, user_id, via, status FROM identity_links ORDER BY anonymous_id, user_id")
        ).all()


def requests(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(text("SELECT day, table_name FROM rebuild_requests ORDER BY 1, 2")).all()


def test_anonymous_browsing_a_login_and_a_purchase_are_one_person(warehouse_engine):
    stage_payloads(
        warehouse_engine,
        "visit",
        [
            track("v1", "2025-08-01T10:00:00Z", anonymous="anon-1", kind="product_view"),
            identify("v2", "2025-08-01T10:05:00Z", "ann", anonymous="anon-1", plan="pro"),
            track("v3", "2025-08-01T10:06:00Z", anonymous="anon-1", user="ann", kind="add_to_cart"),
            track("v4", "2025-08-01T10:10:00Z", anonymous="anon-2"),
        ],
    )
    counts = merge_day(warehouse_engine)
    assert persons(warehouse_engine) == {"v1": "ann", "v2": "ann", "v3": "ann", "v4": "anon-2"}
    assert links(warehouse_engine) == [("anon-1", "ann", "identify", "linked")]
    assert counts.links_refused == 0
    assert counts.persons_moved == 0  # v1 is written as ann's at once: its link is foreseen before the graph is fed
    with warehouse_engine.connect() as conn:
        assert conn.execute(text("SELECT user_id, traits FROM users")).all() == [("ann", {"plan": "pro"})]
        assert conn.scalar(text("SELECT event_type FROM events WHERE event_id = 'v2'")) == "identify"


def test_a_late_identify_re_attributes_earlier_days_and_asks_for_their_rebuild_once(warehouse_engine):
    stage_payloads(
        warehouse_engine,
        "browsing",
        [
            track("b1", "2025-07-30T12:00:00Z", anonymous="anon-1", kind="product_view"),
            track("b2", "2025-08-01T09:00:00Z", anonymous="anon-1"),
        ],
    )
    merge_day(warehouse_engine, date(2025, 7, 30))
    merge_day(warehouse_engine)
    assert persons(warehouse_engine) == {"b1": "anon-1", "b2": "anon-1"}

    stage_payloads(warehouse_engine, "login", [identify("i1", "2025-08-03T08:00:00Z", "ann", anonymous="anon-1")])
    counts = merge_day(warehouse_engine, date(2025, 8, 3))
    assert persons(warehouse_engine) == {"b1": "ann", "b2": "ann", "i1": "ann"}
    assert counts.persons_moved == 2
    person_tables = ["daily_funnel", "sessions", "user_daily_activity"]
    assert requests(warehouse_engine) == [(date(2025, 7, 30), name) for name in person_tables] + [
        (date(2025, 8, 1), name) for name in person_tables
    ]

    with warehouse_engine.begin() as conn:
        conn.execute(text("DELETE FROM rebuild_requests"))
    stage_payloads(warehouse_engine, "login-again", [identify("i1", "2025-08-03T08:00:00Z", "ann", anonymous="anon-1")])
    again = merge_day(warehouse_engine, date(2025, 8, 3))
    assert (again.inserted, again.updated, again.persons_moved, again.links_refused) == (0, 0, 0, 0)
    assert requests(warehouse_engine) == []
    assert persons(warehouse_engine) == {"b1": "ann", "b2": "ann", "i1": "ann"}


def test_an_id_seen_with_two_known_users_is_linked_to_the_earliest_and_the_other_link_refused(warehouse_engine):
    stage_payloads(
        warehouse_engine,
        "shared-device",
        [
            track("s1", "2025-08-01T08:00:00Z", anonymous="device-1"),
            identify("s2", "2025-08-01T09:00:00Z", "bob", anonymous="device-1"),
        ],
    )
    merge_day(warehouse_engine)
    stage_payloads(
        warehouse_engine, "earlier-login", [identify("s0", "2025-08-01T07:00:00Z", "ann", anonymous="device-1")]
    )
    counts = merge_day(warehouse_engine)
    assert counts.links_refused == 1
    assert links(warehouse_engine) == [
        ("device-1", "ann", "identify", "linked"),
        ("device-1", "bob", "identify", "refused"),
    ]
    # Ann and Bob stay two persons; the anonymous event follows the one link kept, whatever the arrival order.
    assert persons(warehouse_engine) == {"s0": "ann", "s1": "ann", "s2": "bob"}
    with warehouse_engine.connect() as conn:
        reason = conn.scalar(text("SELECT reason FROM identity_links WHERE status = 'refused'"))
    assert reason == "the id is linked to user ann already: linking it to user bob as well would merge two users"


def test_an_alias_links_a_previous_id_but_never_merges_two_known_users(warehouse_engine):
    stage_payloads(
        warehouse_engine,
        "aliases",
        [
            track("a1", "2025-08-01T08:00:00Z", anonymous="old-visitor"),
            track("a2", "2025-08-01T08:01:00Z", user="bob"),
            {**track("a3", "2025-08-01T09:00:00Z", user="ann", kind="alias"), "previousId": "old-visitor"},
            {**track("a4", "2025-08-01T09:01:00Z", user="ann", kind="alias"), "previousId": "bob"},
        ],
    )
    counts = merge_day(warehouse_engine)
    assert links(warehouse_engine) == [("bob", "ann", "alias", "refused"), ("old-visitor", "ann", "alias", "linked")]
    assert counts.links_refused == 1
    assert persons(warehouse_engine) == {"a1": "ann", "a2": "bob", "a3": "ann", "a4": "ann"}


def test_traits_and_groups_are_kept_newest_value_per_trait_with_pii_pseudonymized(warehouse_engine):
    stage_payloads(
        warehouse_engine,
        "traits",
        [
            identify("t2", "2025-08-01T10:00:00Z", "ann", email="Ann@Example.com", plan="pro"),
            identify("t1", "2025-08-01T09:00:00Z", "ann", plan="free", country="FR"),
            {
                **track("g1", "2025-08-01T10:30:00Z", user="ann", kind="group"),
                "groupId": "acme",
                "traits": {"name": "Acme", "employees": 10},
            },
        ],
    )
    merge_day(warehouse_engine)
    email = pseudonymize("Ann@Example.com", PII.key)
    with warehouse_engine.connect() as conn:
        assert conn.execute(text("SELECT traits FROM users WHERE user_id = 'ann'")).scalar() == {
            "email": email,
            "plan": "pro",
            "country": "FR",
        }
        assert (
            conn.execute(text("SELECT properties -> 'traits' ->> 'email' FROM events WHERE event_id = 't2'")).scalar()
            == email
        )
        assert conn.execute(text("SELECT group_id, member_id, traits, event_id FROM group_memberships")).all() == [
            ("acme", "ann", {"name": "Acme", "employees": 10}, "g1")
        ]
    stage_payloads(warehouse_engine, "traits-again", [identify("t1", "2025-08-01T09:00:00Z", "ann", plan="free")])
    merge_day(warehouse_engine)
    with warehouse_engine.connect() as conn:
        assert conn.execute(text("SELECT traits ->> 'plan' FROM users")).scalar() == "pro"


def test_two_days_merged_at_once_link_an_anonymous_id_to_one_user_only(warehouse_engine):
    """Day 1 links anon-1 to ann, day 2 links it to bob, and both merges run at once: the second decides against the
    first's link, so one link holds and the other is refused, whichever commits first."""
    stage_payloads(warehouse_engine, "day-1", [identify("i1", "2025-08-01T10:00:00Z", "ann", anonymous="anon-1")])
    stage_payloads(warehouse_engine, "day-2", [identify("i2", "2025-08-02T10:00:00Z", "bob", anonymous="anon-1")])
    options = MergeOptions(ACCEPTED, PII)
    with warehouse_engine.begin() as conn:  # the days' partitions exist, as they do but on a first load
        ensure_event_partitions(conn, [DAY, date(2025, 8, 2)])
    first = warehouse_engine.connect()
    transaction = first.begin()
    merge_in(first, DAY, options)  # day 1 merged, not committed yet
    second = threading.Thread(target=merge_day, args=(warehouse_engine, date(2025, 8, 2)))
    second.start()
    with warehouse_engine.connect() as watcher:  # until day 2's merge waits on day 1's (or has finished without)
        while second.is_alive() and not watcher.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> :me"),
            {"me": first.connection.driver_connection.info.backend_pid},
        ):
            watcher.rollback()
            time.sleep(0.02)
    transaction.commit()
    first.close()
    second.join(timeout=60)

    assert [(link[0], link[1], link[3]) for link in links(warehouse_engine)] == [
        ("anon-1", "ann", "linked"),
        ("anon-1", "bob", "refused"),
    ]


def test_a_day_written_while_another_day_links_its_anonymous_id_ends_with_the_linked_person(warehouse_engine):
    """Day 2 holds only anonymous browsing of anon-1; day 1 links anon-1 to ann and commits after day 2's rows are
    written with anon-1 as their person (day 1's link was not committed yet): day 2's merge, under the graph's lock,
    finds its rows' person stale and moves them to ann, asking for nothing beyond its own day."""
    stage_payloads(warehouse_engine, "day-1", [identify("i1", "2025-08-01T10:00:00Z", "ann", anonymous="anon-1")])
    stage_payloads(warehouse_engine, "day-2", [track("p2", "2025-08-02T10:00:00Z", anonymous="anon-1")])
    options = MergeOptions(ACCEPTED, PII)
    with warehouse_engine.begin() as conn:
        ensure_event_partitions(conn, [DAY, date(2025, 8, 2)])
    first = warehouse_engine.connect()
    transaction = first.begin()
    merge_in(first, DAY, options)  # day 1 merged and holding the graph's lock, not committed yet
    merged: list = []
    second = threading.Thread(target=lambda: merged.append(merge_day(warehouse_engine, date(2025, 8, 2))))
    second.start()
    with warehouse_engine.connect() as watcher:  # until day 2's merge waits for the graph's lock
        while not watcher.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> :me"),
            {"me": first.connection.driver_connection.info.backend_pid},
        ):
            assert second.is_alive(), "day 2's merge finished without waiting for day 1's"
            watcher.rollback()
            time.sleep(0.02)
        assert watcher.scalar(text("SELECT count(*) FROM events WHERE event_id = 'p2'")) == 0  # not committed
    transaction.commit()
    first.close()
    second.join(timeout=60)

    assert persons(warehouse_engine) == {"i1": "ann", "p2": "ann"}
    assert merged[0].persons_moved == 1
    assert requests(warehouse_engine) == []
