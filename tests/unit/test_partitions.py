from datetime import date

from etl_assets.warehouse.partitions import event_partition_name, is_partition_table


def test_partition_names_sort_by_day():
    names = [event_partition_name(date(2025, 12, 31)), event_partition_name(date(2026, 1, 1))]
    assert names == ["events_p20251231", "events_p20260101"]
    assert sorted(names) == names


def test_only_day_partitions_are_recognised():
    assert is_partition_table("events_p20250801")
    assert not is_partition_table("events")
    assert not is_partition_table("events_p2025")
    assert not is_partition_table("staging_events")
