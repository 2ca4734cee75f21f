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

from etl_assets.warehouse.enrichment import SESSION_GAP
from etl_assets.warehouse.schema import PERSON_TABLES, SESSION_TABLES

LINKED = "linked"
REFUSED = "refused"

IDENTITY_COLUMNS = ("linked_ids", "group_id", "traits")
"""Columns the merge's incoming rows carry beside the event's: its ``IdentityFacts``."""
IDENTITY_COLUMN_TYPES = {"linked_ids": "text[]", "group_id": "text", "traits": "jsonb"}

PERSON_OF_CANDIDATE = "coalesce(c.user_id, person_link.user_id, c.anonymous_id)"
LINK_OF_CANDIDATE = (
    "LEFT JOIN identity_links person_link ON c.user_id IS NULL "
    f"AND person_link.anonymous_id = c.anonymous_id AND person_link.status = '{LINKED}'"
)
"""SQL: the person of a row ``c`` of the merge's ``candidates``, once the links are decided (its user id, else the
user its anonymous id is linked to, joined with ``LINK_OF_CANDIDATE``, else its anonymous id)."""

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
"""The key of the identity graph's advisory lock ("idty"), taken by each merge from its identity step to its commit.

Merges of different days run at the same time; without it, two of them that link one anonymous id to two users
would each find the id unlinked (neither sees the other's link before it commits) and both links would hold, and
an id that becomes a user in one would stay linked in the other. Merges that share users already waited on each
other's rows of ``users`` here, so the lock costs them nothing; the steps before it (reading, the ledger claim)
still overlap."""
TAKE_GRAPH_LOCK = text("SELECT pg_advisory_xact_lock(:lock_class, 0)")

_TRAITS_AGG = "jsonb_object_agg(t.key, t.value ORDER BY c.occurred_at, c.event_id) FILTER (WHERE t.key IS NOT NULL)"

COLLECT_CLAIMS = text(
    "CREATE TEMP TABLE new_claims ON COMMIT DROP AS "
    "SELECT DISTINCT ON (linked_id, user_id) linked_id AS anonymous_id, user_id, "
    "CASE WHEN event_type IN ('identify', 'alias') THEN event_type ELSE 'event' END AS via, event_id, occurred_at "
    "FROM candidates CROSS JOIN LATERAL unnest(linked_ids) AS linked_id "
    "WHERE user_id IS NOT NULL ORDER BY linked_id, user_id, occurred_at, event_id"
)
COLLECT_CLAIMED_IDS = text("CREATE TEMP TABLE claimed ON COMMIT DROP AS SELECT DISTINCT anonymous_id FROM new_claims")
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
SNAPSHOT_LINKS = text(
    "CREATE TEMP TABLE links_before ON COMMIT DROP AS SELECT c.anonymous_id, l.user_id FROM claimed c "
    f"LEFT JOIN identity_links l ON l.anonymous_id = c.anonymous_id AND l.status = '{LINKED}'"
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
CREATE_WRITTEN_PERSONS = text(
    "CREATE TEMP TABLE written_persons (person_id text, occurred_at timestamptz) ON COMMIT DROP"
)
REATTRIBUTE = text(
    "WITH changed AS ("
    "  SELECT b.anonymous_id, b.user_id AS before_user, l.user_id AS after_user FROM links_before b "
    f"  LEFT JOIN identity_links l ON l.anonymous_id = b.anonymous_id AND l.status = '{LINKED}' "
    "  WHERE b.user_id IS DISTINCT FROM l.user_id"
    "), moved AS ("
    "  UPDATE events e SET person_id = coalesce(c.after_user, e.anonymous_id) FROM changed c "
    "  WHERE e.anonymous_id = c.anonymous_id AND e.user_id IS NULL "
    "  AND e.person_id IS DISTINCT FROM coalesce(c.after_user, e.anonymous_id) "
    "  RETURNING e.person_id, coalesce(c.before_user, e.anonymous_id) AS before_person, e.occurred_at"
    ") "
    "INSERT INTO written_persons (person_id, occurred_at) "
    "SELECT person_id, occurred_at FROM moved UNION ALL SELECT before_person, occurred_at FROM moved"
)
"""Moves the events of every id whose link changed to their new person; their persons (new and old) and times
join those of the rows the upsert wrote."""
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


def link_candidates(conn: Connection) -> IdentityCounts:
    """Feed the merge's ``candidates`` to the graph: users and their traits, then links, decided.

    Runs before the candidates are written to ``events``, whose ``person_id`` reads the decided links
    (``PERSON_OF_CANDIDATE``). Holds the graph's lock until the merge commits: a link is decided against every
    link and user the graph has, and another day's merge running at the same time would not see its own.
    """
    conn.execute(TAKE_GRAPH_LOCK, {"lock_class": GRAPH_LOCK_CLASS})
    conn.execute(COLLECT_CLAIMS)
    conn.execute(COLLECT_CLAIMED_IDS)
    conn.execute(UPSERT_USERS)
    conn.execute(SNAPSHOT_LINKS)
    conn.execute(INSERT_CLAIMS)
    refused = sum(status == REFUSED for status in conn.scalars(DECIDE_LINKS))
    conn.execute(CREATE_WRITTEN_PERSONS)
    return IdentityCounts(links_refused=refused)


def after_upsert(conn: Connection, merged_days: list[date], counts: IdentityCounts) -> None:
    """Once the candidates are in ``events``: move the events of re-linked ids to their person, ask for the days
    this changed beyond ``merged_days`` to be rebuilt, and keep the group calls."""
    counts.persons_moved = conn.execute(REATTRIBUTE).rowcount // 2
    conn.execute(
        REQUEST_REBUILDS,
        {
            "person_tables": [table.name for table in PERSON_TABLES],
            "session_tables": [table.name for table in SESSION_TABLES],
            "merged_days": merged_days,
        },
    )
    conn.execute(UPSERT_GROUPS)


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
