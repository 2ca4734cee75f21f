"""The identity graph: one person across ids, kept by each day's merge in the same transaction.

**The model.** A user id is a person. An anonymous id (or an alias's previous id) belongs to the user it is
*linked* to in ``identity_links``, else it is a person of its own. So an event's ``person_id`` is its user id,
else the user its anonymous id is linked to, else its anonymous id. What links an id to a user
(``etl_assets.transform.identity``): an event that carries both ids, an ``identify`` (the same), an ``alias``
(``previousId`` → ``userId``).

**Two known users are never merged.** An id is linked to one user at most: of the users it was seen with, the
one of the earliest event (then the smallest user id) — so the result does not depend on arrival order. Every
other pair is kept with status ``refused`` and the reason, and so is a link from an id that is itself a known
user id (an ``alias`` between two users). Refused links are counted by the merge, shown by ``etl status`` and by
the ``identity_links_refused`` check.

**Re-attribution.** When an id's link changes (a late ``identify``), the merge moves that id's earlier events to
their new person (``events.person_id``) on every day, and asks for the person tables of those days to be rebuilt
(``rebuild_requests``, read by ``staged_days_sensor``). Sessions run past midnight, so a change to a person's
events near a day's edge asks for the sessions of the neighbouring day too.

**Exactly once.** Every step is an upsert keyed by the graph's own keys that writes only what differs: a second
delivery of the same calls changes no row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, Engine, text

from etl_assets.warehouse.copy import temp_table
from etl_assets.warehouse.enrichment import SESSION_GAP
from etl_assets.warehouse.schema import LINKED, PERSON_TABLES, REFUSED, SESSION_TABLES

IDENTITY_COLUMNS = ("linked_ids", "group_id", "traits")
"""Columns the merge's incoming rows carry beside the event's: its ``IdentityFacts``."""

PERSON_OF_CANDIDATE = "coalesce(c.user_id, claim_link.user_id, person_link.user_id, c.anonymous_id)"
LINK_OF_CANDIDATE = (
    "LEFT JOIN expected_links claim_link ON c.user_id IS NULL AND claim_link.anonymous_id = c.anonymous_id "
    "LEFT JOIN identity_links person_link ON c.user_id IS NULL AND claim_link.anonymous_id IS NULL "
    f"AND person_link.anonymous_id = c.anonymous_id AND person_link.status = '{LINKED}'"
)
"""SQL: the person of a row ``c`` of the merge's ``candidates`` as it is written to ``events``, before the graph is
locked (its user id, else the user its anonymous id is expected to be linked to, joined with
``LINK_OF_CANDIDATE``: for an id this merge claims, the decision ``EXPECT_LINKS`` foresees; for any other, the
graph's link; else its anonymous id)."""

_GAP = f"interval '{int(SESSION_GAP.total_seconds())} seconds'"


def _merged_traits(table: str, newest: str) -> str:
    """SQL: ``table``'s traits with the incoming ones; for each trait the newest value wins (``newest``: the
    incoming traits are at least as new as the stored)."""
    return (
        f"CASE WHEN excluded.traits IS NULL THEN {table}.traits "
        f"WHEN {newest} THEN coalesce({table}.traits, '{{}}') || excluded.traits "
        f"ELSE excluded.traits || coalesce({table}.traits, '{{}}') END"
    )


GRAPH_LOCK_CLASS = 0x69647479
"""The key of the identity graph's advisory lock ("idty"), taken by each merge once its rows are in ``events`` and
held to its commit.

Merges of different days run at the same time; without it, two of them that link one anonymous id to two users
would each find the id unlinked (neither sees the other's link before it commits) and both links would hold, and
an id that becomes a user in one would stay linked in the other. Only the graph's steps wait on it: the rows are
written before, with the persons the graph is expected to give them (``EXPECT_LINKS``), and a person another
merge's commit changed meanwhile is corrected under the lock (``REATTRIBUTE``)."""
TAKE_GRAPH_LOCK = text("SELECT pg_advisory_xact_lock(:lock_class, 0)")

_TRAITS_AGG = "jsonb_object_agg(t.key, t.value ORDER BY c.occurred_at, c.event_id) FILTER (WHERE t.key IS NOT NULL)"

COLLECT_CLAIMS = temp_table(
    "new_claims",
    query="SELECT DISTINCT ON (linked_id, user_id) linked_id AS anonymous_id, user_id, "
    "CASE WHEN event_type IN ('identify', 'alias') THEN event_type ELSE 'event' END AS via, event_id, occurred_at "
    "FROM candidates CROSS JOIN LATERAL unnest(linked_ids) AS linked_id "
    "WHERE user_id IS NOT NULL ORDER BY linked_id, user_id, occurred_at, event_id",
)
COLLECT_CLAIMED_IDS = temp_table("claimed", query="SELECT DISTINCT anonymous_id FROM new_claims")
EXPECT_LINKS = temp_table(
    "expected_links",
    query="WITH claims AS ("
    "  SELECT anonymous_id, user_id, min(occurred_at) AS occurred_at FROM ("
    "    SELECT l.anonymous_id, l.user_id, l.occurred_at FROM identity_links l "
    "    JOIN claimed c ON c.anonymous_id = l.anonymous_id "
    "    UNION ALL SELECT anonymous_id, user_id, occurred_at FROM new_claims"
    "  ) all_claims GROUP BY anonymous_id, user_id"
    "), first_claims AS ("
    "  SELECT DISTINCT ON (anonymous_id) anonymous_id, user_id FROM claims ORDER BY anonymous_id, occurred_at, user_id"
    ") "
    "SELECT f.anonymous_id, CASE WHEN EXISTS (SELECT 1 FROM users u WHERE u.user_id = f.anonymous_id) "
    "  OR EXISTS (SELECT 1 FROM candidates k WHERE k.user_id = f.anonymous_id) THEN NULL ELSE f.user_id END AS user_id "
    "FROM first_claims f",
)
"""The link each id this merge claims is expected to get (``NULL``: none), by ``DECIDE_LINKS``'s rule applied to
the graph as committed and this merge's claims, without writing it: the rows are written with these persons before
the graph is locked, so merges of different days write their rows at the same time. Where another merge's commit
changes the outcome before the lock is taken, ``REATTRIBUTE`` corrects the rows."""
_USERS_TRAITS = _merged_traits("users", "users.traits_at IS NULL OR excluded.traits_at >= users.traits_at")
UPSERT_USERS = text(
    "WITH seen AS ("
    "  SELECT c.user_id, min(c.occurred_at) AS first_seen_at, "
    f"   CASE WHEN bool_or(c.event_type = 'identify') THEN coalesce({_TRAITS_AGG}, '{{}}') END AS traits, "
    "    max(c.occurred_at) FILTER (WHERE c.event_type = 'identify') AS traits_at "
    "  FROM candidates c "
    "  LEFT JOIN LATERAL jsonb_each(CASE WHEN c.event_type = 'identify' THEN c.traits END) t ON true "
    "  WHERE c.user_id IS NOT NULL GROUP BY c.user_id"
    "), upserted AS ("
    "  INSERT INTO users (user_id, first_seen_at, traits, traits_at) "
    "  SELECT user_id, first_seen_at, traits, traits_at FROM seen "
    "  ON CONFLICT (user_id) DO UPDATE SET first_seen_at = least(users.first_seen_at, excluded.first_seen_at), "
    f"   traits = {_USERS_TRAITS}, traits_at = greatest(users.traits_at, excluded.traits_at), updated_at = now() "
    "  WHERE excluded.first_seen_at < users.first_seen_at "
    f"   OR ({_USERS_TRAITS}, greatest(users.traits_at, excluded.traits_at)) "
    "      IS DISTINCT FROM (users.traits, users.traits_at) "
    "  RETURNING user_id, xmax = 0 AS is_new"
    ") "
    # An id that has just become a known user may no longer be linked to another user: decide its links again.
    "INSERT INTO claimed (anonymous_id) SELECT DISTINCT l.anonymous_id FROM identity_links l "
    "JOIN upserted u ON u.user_id = l.anonymous_id AND u.is_new "
    "WHERE NOT EXISTS (SELECT 1 FROM claimed c WHERE c.anonymous_id = l.anonymous_id)"
)
SNAPSHOT_LINKS = temp_table(
    "links_before",
    query="SELECT c.anonymous_id, l.user_id FROM claimed c "
    f"LEFT JOIN identity_links l ON l.anonymous_id = c.anonymous_id AND l.status = '{LINKED}'",
)
INSERT_CLAIMS = text(
    "INSERT INTO identity_links AS l (anonymous_id, user_id, via, event_id, occurred_at, status) "
    f"SELECT anonymous_id, user_id, via, event_id, occurred_at, '{REFUSED}' FROM new_claims "
    "ON CONFLICT (anonymous_id, user_id) DO UPDATE SET via = excluded.via, event_id = excluded.event_id, "
    "occurred_at = excluded.occurred_at "
    "WHERE (excluded.occurred_at, excluded.event_id) < (l.occurred_at, l.event_id)"
)
DECIDE_LINKS = text(
    "WITH ranked AS ("
    "  SELECT l.anonymous_id, l.user_id, "
    "    EXISTS (SELECT 1 FROM users u WHERE u.user_id = l.anonymous_id) AS known_user, "
    "    first_value(l.user_id) OVER w AS first_user, row_number() OVER w AS rank "
    "  FROM identity_links l JOIN claimed c ON c.anonymous_id = l.anonymous_id "
    "  WINDOW w AS (PARTITION BY l.anonymous_id ORDER BY l.occurred_at, l.user_id)"
    "), decided AS ("
    f"  SELECT anonymous_id, user_id, CASE WHEN known_user OR rank > 1 THEN '{REFUSED}' ELSE '{LINKED}' END AS status, "
    "    CASE WHEN known_user THEN 'the id is itself a known user id: linking it to user ' || user_id "
    "      || ' would merge two users' "
    "    WHEN rank > 1 THEN 'the id is linked to user ' || first_user || ' already: linking it to user ' || user_id "
    "      || ' as well would merge two users' END AS reason "
    "  FROM ranked"
    ") "
    "UPDATE identity_links l SET status = d.status, reason = d.reason, decided_at = now() FROM decided d "
    "WHERE l.anonymous_id = d.anonymous_id AND l.user_id = d.user_id "
    "AND (l.status, l.reason) IS DISTINCT FROM (d.status, d.reason) "
    "RETURNING d.status"
)
"""Decides every link of the ids claimed now; returns the status of each link whose decision changed."""
CREATE_WRITTEN_PERSONS = temp_table("written_persons", columns="person_id text, occurred_at timestamptz")
CREATE_WRITTEN_ANONYMOUS = temp_table("written_anonymous", columns="anonymous_id text, person_id text")
"""The anonymous ids of the rows the merge wrote without a user id, with the person each was written with."""
REATTRIBUTE = text(
    "WITH relinked AS ("
    "  SELECT b.anonymous_id, coalesce(b.user_id, b.anonymous_id) AS before_person, l.user_id AS after_user "
    "  FROM links_before b "
    f"  LEFT JOIN identity_links l ON l.anonymous_id = b.anonymous_id AND l.status = '{LINKED}' "
    "  WHERE b.user_id IS DISTINCT FROM l.user_id"
    "), written_stale AS ("
    "  SELECT DISTINCT w.anonymous_id, w.person_id AS before_person, l.user_id AS after_user "
    "  FROM written_anonymous w "
    f"  LEFT JOIN identity_links l ON l.anonymous_id = w.anonymous_id AND l.status = '{LINKED}' "
    "  WHERE w.person_id IS DISTINCT FROM coalesce(l.user_id, w.anonymous_id) "
    "  AND NOT EXISTS (SELECT 1 FROM relinked r WHERE r.anonymous_id = w.anonymous_id)"
    "), changed AS (SELECT * FROM relinked UNION ALL SELECT * FROM written_stale"
    "), moved AS ("
    "  UPDATE events e SET person_id = coalesce(c.after_user, e.anonymous_id) FROM changed c "
    "  WHERE e.anonymous_id = c.anonymous_id AND e.user_id IS NULL "
    "  AND e.person_id IS DISTINCT FROM coalesce(c.after_user, e.anonymous_id) "
    "  RETURNING e.person_id, c.before_person, e.occurred_at"
    ") "
    "INSERT INTO written_persons (person_id, occurred_at) "
    "SELECT person_id, occurred_at FROM moved UNION ALL SELECT before_person, occurred_at FROM moved"
)
"""Moves to their new person the events of every id whose link this merge changed, on every day, and this merge's
own rows whose person is not the graph's (another merge's commit changed it after they were written, or an id
became a known user); their persons (new and old) and times join those of the rows the upsert wrote."""
REQUEST_REBUILDS = text(
    "WITH touched AS ("
    "  SELECT DISTINCT person_id, (occurred_at AT TIME ZONE 'UTC')::date AS day FROM written_persons"
    "), edges AS ("
    "  SELECT t.person_id, t.day, (t.day::timestamp AT TIME ZONE 'UTC') AS day_start FROM touched t"
    "), requested AS ("
    "  SELECT DISTINCT day, unnest(CAST(:person_tables AS text[])) AS table_name FROM touched "
    "  UNION "
    "  SELECT DISTINCT e.day - 1, unnest(CAST(:session_tables AS text[])) FROM edges e CROSS JOIN LATERAL ("
    "    SELECT 1 FROM events x WHERE x.person_id = e.person_id "
    f"   AND x.occurred_at >= e.day_start - {_GAP} AND x.occurred_at < e.day_start LIMIT 1) before_midnight "
    "  UNION "
    "  SELECT DISTINCT e.day + 1, unnest(CAST(:session_tables AS text[])) FROM edges e CROSS JOIN LATERAL ("
    "    SELECT 1 FROM events x WHERE x.person_id = e.person_id "
    f"   AND x.occurred_at >= e.day_start + interval '1 day' "
    f"   AND x.occurred_at < e.day_start + interval '1 day' + {_GAP} LIMIT 1) after_midnight"
    ") "
    # The merge's own days are rebuilt by the run that merges them.
    "INSERT INTO rebuild_requests (day, table_name) SELECT day, table_name FROM requested "
    "WHERE NOT (day = ANY(CAST(:merged_days AS date[]))) "
    "ON CONFLICT (day, table_name) DO UPDATE SET requested_at = now()"
)
"""Asks for the person tables of the days the written persons touched, and for the sessions of a neighbouring day
where such a person has events within a session gap of midnight. Each neighbour is looked up by person in the
``(person_id, occurred_at)`` index (``LIMIT 1`` in a lateral join), in the one partition the time range prunes to;
planned as a semi-join, with the statistics of a partition just written, it hashed every partition of ``events``."""
_GROUP_TRAITS = _merged_traits("g", "(excluded.occurred_at, excluded.event_id) >= (g.occurred_at, g.event_id)")
_GROUP_NEWER = "(excluded.occurred_at, excluded.event_id) > (g.occurred_at, g.event_id)"
UPSERT_GROUPS = text(
    "WITH calls AS ("
    "  SELECT group_id, coalesce(user_id, anonymous_id) AS member_id, user_id, anonymous_id, traits, occurred_at, "
    "    event_id FROM candidates WHERE event_type = 'group' AND group_id IS NOT NULL"
    "), newest AS ("
    "  SELECT DISTINCT ON (group_id, member_id) * FROM calls "
    "  ORDER BY group_id, member_id, occurred_at DESC, event_id DESC"
    "), merged AS ("
    f"  SELECT c.group_id, c.member_id, coalesce({_TRAITS_AGG}, '{{}}') AS traits FROM calls c "
    "  LEFT JOIN LATERAL jsonb_each(c.traits) t ON true GROUP BY c.group_id, c.member_id"
    ") "
    "INSERT INTO group_memberships AS g (group_id, member_id, user_id, anonymous_id, traits, occurred_at, event_id) "
    "SELECT n.group_id, n.member_id, n.user_id, n.anonymous_id, m.traits, n.occurred_at, n.event_id "
    "FROM newest n JOIN merged m USING (group_id, member_id) "
    "ON CONFLICT (group_id, member_id) DO UPDATE SET "
    f"  user_id = CASE WHEN {_GROUP_NEWER} THEN excluded.user_id ELSE g.user_id END, "
    f"  anonymous_id = CASE WHEN {_GROUP_NEWER} THEN excluded.anonymous_id ELSE g.anonymous_id END, "
    f"  traits = {_GROUP_TRAITS}, "
    "  occurred_at = greatest(g.occurred_at, excluded.occurred_at), "
    f"  event_id = CASE WHEN {_GROUP_NEWER} THEN excluded.event_id ELSE g.event_id END, "
    "  updated_at = now() "
    f"WHERE {_GROUP_NEWER} OR {_GROUP_TRAITS} IS DISTINCT FROM g.traits"
)


@dataclass
class IdentityCounts:
    links_refused: int = 0
    persons_moved: int = 0


def expect_links(conn: Connection) -> None:
    """Before the candidates are written to ``events``: collect the links they claim and the persons they are
    expected to get (``EXPECT_LINKS``, read by ``PERSON_OF_CANDIDATE``), without writing the graph or locking it."""
    conn.execute(COLLECT_CLAIMS)
    conn.execute(COLLECT_CLAIMED_IDS)
    conn.execute(EXPECT_LINKS)
    conn.execute(CREATE_WRITTEN_PERSONS)
    conn.execute(CREATE_WRITTEN_ANONYMOUS)


def link_written(conn: Connection, merged_days: list[date]) -> IdentityCounts:
    """Once the candidates are in ``events``: take the graph's lock (held until the merge commits), feed it the
    users and their traits and the links, decided against every link and user the graph has; move the events of
    re-linked ids, and of this merge's rows written with another person, to their person; ask for the days this
    changed beyond ``merged_days`` to be rebuilt, and keep the group calls."""
    conn.execute(TAKE_GRAPH_LOCK, {"lock_class": GRAPH_LOCK_CLASS})
    conn.execute(UPSERT_USERS)
    conn.execute(SNAPSHOT_LINKS)
    conn.execute(INSERT_CLAIMS)
    refused = sum(status == REFUSED for status in conn.scalars(DECIDE_LINKS))
    persons_moved = conn.execute(REATTRIBUTE).rowcount // 2
    conn.execute(
        REQUEST_REBUILDS,
        {
            "person_tables": [table.name for table in PERSON_TABLES],
            "session_tables": [table.name for table in SESSION_TABLES],
            "merged_days": merged_days,
        },
    )
    conn.execute(UPSERT_GROUPS)
    return IdentityCounts(links_refused=refused, persons_moved=persons_moved)


@dataclass(frozen=True)
class IdentitySummary:
    users: int
    linked: int
    refused: int


SUMMARIZE = text(
    "SELECT (SELECT count(*) FROM users), "
    f"(SELECT count(*) FROM identity_links WHERE status = '{LINKED}'), "
    f"(SELECT count(*) FROM identity_links WHERE status = '{REFUSED}')"
)


def summarize_identity(engine: Engine) -> IdentitySummary:
    """How many users the graph knows, how many ids are linked to them, and how many links it refused."""
    with engine.connect() as conn:
        return IdentitySummary(*conn.execute(SUMMARIZE).one())
