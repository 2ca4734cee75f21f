"""Schema drift as a pure comparison: known fields of a source against a day's profile of it."""

from datetime import date

from etl_assets.transform.drift import (
    ChangedType,
    FieldProfile,
    KnownField,
    NewField,
    SourceProfile,
    VanishedField,
    compare_fields,
)

MONDAY, TUESDAY = date(2025, 3, 3), date(2025, 3, 4)
MIN_ROWS = 20


def known(**fields: str) -> dict[str, KnownField]:
    """Fields last seen on Monday, with their comma-separated types."""
    return {
        name.replace("__", "."): KnownField(frozenset(types.split(",")) - {""}, MONDAY, MONDAY)
        for name, types in fields.items()
    }


def profile(rows: int, **fields: tuple[int, str]) -> SourceProfile:
    return SourceProfile(
        "s3",
        rows,
        {
            name.replace("__", "."): FieldProfile(count, frozenset(types.split(",")) - {""})
            for name, (count, types) in fields.items()
        },
    )


USUAL = known(id="string", timestamp="string", price="number", properties="object", properties__sku="string")


def usual_profile(rows: int = 50, without: tuple[str, ...] = (), **extra: tuple[int, str]) -> SourceProfile:
    fields = {
        "id": (rows, "string"),
        "timestamp": (rows, "string"),
        "price": (rows, "number"),
        "properties": (rows, "object"),
        "properties__sku": (rows, "string"),
    }
    return profile(rows, **{name: seen for name, seen in {**fields, **extra}.items() if name not in without})


def test_a_source_never_profiled_is_a_baseline_without_drift():
    report = compare_fields({}, usual_profile(), day=MONDAY, min_rows=MIN_ROWS)
    assert report.baseline
    assert not report.has_drift
    assert list(report.changes()) == []


def test_the_same_fields_again_are_no_drift():
    report = compare_fields(USUAL, usual_profile(), day=TUESDAY, min_rows=MIN_ROWS)
    assert not report.baseline
    assert report.vanished_checked
    assert not report.has_drift


def test_a_field_never_seen_is_new_with_its_types_and_rows():
    report = compare_fields(
        USUAL, usual_profile(coupon=(7, "string"), properties__color=(3, "string")), day=TUESDAY, min_rows=MIN_ROWS
    )
    assert report.new_fields == (
        NewField("coupon", frozenset({"string"}), 7),
        NewField("properties.color", frozenset({"string"}), 3),
    )
    assert report.has_drift
    assert [(change.field, change.change) for change in report.changes()] == [
        ("coupon", "new"),
        ("properties.color", "new"),
    ]


def test_a_field_of_the_last_profiled_day_missing_from_every_row_has_vanished():
    report = compare_fields(USUAL, usual_profile(without=("properties__sku",)), day=TUESDAY, min_rows=MIN_ROWS)
    assert report.vanished_fields == (VanishedField("properties.sku", frozenset({"string"}), MONDAY),)
    assert [change.change for change in report.changes()] == ["vanished (last seen 2025-03-03)"]


def test_a_field_present_in_a_single_row_has_not_vanished():
    report = compare_fields(USUAL, usual_profile(price=(1, "number")), day=TUESDAY, min_rows=MIN_ROWS)
    assert report.vanished_fields == ()


def test_vanished_fields_need_at_least_min_rows():
    current = profile(MIN_ROWS - 1, id=(MIN_ROWS - 1, "string"))
    report = compare_fields(USUAL, current, day=TUESDAY, min_rows=MIN_ROWS)
    assert not report.vanished_checked
    assert report.vanished_fields == ()
    assert compare_fields(
        USUAL, profile(MIN_ROWS, id=(MIN_ROWS, "string")), day=TUESDAY, min_rows=MIN_ROWS
    ).vanished_fields


def test_only_fields_of_the_most_recent_profiled_day_can_vanish():
    history = {**USUAL, "legacy": KnownField(frozenset({"string"}), date(2025, 2, 1), date(2025, 2, 10))}
    report = compare_fields(history, usual_profile(), day=TUESDAY, min_rows=MIN_ROWS)
    assert report.vanished_fields == ()


def test_reprofiling_the_last_day_or_an_older_one_reports_nothing_vanished():
    for day in (MONDAY, date(2025, 3, 1)):
        report = compare_fields(USUAL, profile(50, id=(50, "string")), day=day, min_rows=MIN_ROWS)
        assert not report.vanished_checked
        assert report.vanished_fields == ()


def test_a_field_with_a_type_it_never_had_is_reported_with_the_known_and_the_new_types():
    report = compare_fields(USUAL, usual_profile(price=(50, "number,string")), day=TUESDAY, min_rows=MIN_ROWS)
    assert report.changed_types == (ChangedType("price", frozenset({"number"}), frozenset({"string"}), 50),)
    [change] = report.changes()
    assert (change.field, change.change, change.types, change.rows) == ("price", "type changed", "number → +string", 50)


def test_null_values_are_not_a_type_change():
    report = compare_fields(USUAL, usual_profile(price=(50, "")), day=TUESDAY, min_rows=MIN_ROWS)
    assert report.changed_types == ()
    assert not report.has_drift
