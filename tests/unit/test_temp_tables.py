import pytest

from etl_assets.warehouse.copy import temp_table


def test_a_temporary_table_is_dropped_at_commit_whether_declared_or_filled_by_a_query() -> None:
    assert temp_table("winners", columns="event_id text").text == (
        "CREATE TEMP TABLE winners (event_id text) ON COMMIT DROP"
    )
    assert temp_table("claimed", query="SELECT 1").text == "CREATE TEMP TABLE claimed ON COMMIT DROP AS SELECT 1"


@pytest.mark.parametrize("arguments", [{}, {"columns": "id int", "query": "SELECT 1"}])
def test_a_temporary_table_takes_its_columns_or_a_query(arguments: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="either its columns or a query"):
        temp_table("t", **arguments)
