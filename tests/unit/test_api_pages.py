import orjson
import pytest

from etl_assets.transform.api_pages import MalformedPage, Page, dig, parse_page
from etl_assets.transform.records import NUL_REASON, ParsedRecord, RejectedRecord

NEXT_URL = "https://api.example/events?cursor=abc"


def page(document, records_field="data", next_field="next", link_header_next=None) -> Page:
    return parse_page(orjson.dumps(document), records_field, next_field, link_header_next)


def malformed(body: bytes, records_field="data", next_field="next") -> str:
    with pytest.raises(MalformedPage) as raised:
        parse_page(body, records_field, next_field)
    return str(raised.value)


# --- dig -------------------------------------------------------------------------------------------------------------


def test_dig_follows_dotted_keys():
    assert dig({"a": {"b": {"c": 3}}}, "a.b.c") == 3
    assert dig({"a": {"b": {"c": 3}}}, "a.b") == {"c": 3}
    assert dig({"a": 1}, "a") == 1


def test_dig_gives_none_when_a_step_is_missing():
    assert dig({"a": {"b": 1}}, "a.x") is None
    assert dig({"a": {"b": 1}}, "x.b") is None


def test_dig_gives_none_when_a_step_is_not_an_object():
    assert dig({"a": [{"b": 1}]}, "a.b") is None
    assert dig({"a": "text"}, "a.b") is None
    assert dig([{"a": 1}], "a") is None


# --- records ---------------------------------------------------------------------------------------------------------


def test_records_are_numbered_from_one_on_each_page():
    result = page({"data": [{"id": "e1"}, {"id": "e2"}]})
    assert result.records == [
        ParsedRecord(1, {"id": "e1"}, '{"id":"e1"}'),
        ParsedRecord(2, {"id": "e2"}, '{"id":"e2"}'),
    ]


def test_records_at_a_dotted_field():
    result = page({"result": {"items": [{"id": "e1"}]}}, records_field="result.items")
    assert [record.payload for record in result.records] == [{"id": "e1"}]


def test_with_no_records_field_the_page_itself_is_the_list():
    result = page([{"id": "e1"}], records_field="", next_field=None)
    assert [record.payload for record in result.records] == [{"id": "e1"}]
    assert result.next_cursor is None


def test_an_empty_list_of_records():
    assert page({"data": [], "next": None}) == Page([], None)


def test_records_that_are_not_objects_or_hold_nul_are_rejected_not_raised():
    result = page({"data": [{"id": "e1"}, "e2", {"id": "e\x003"}]})
    first, second, third = result.records
    assert isinstance(first, ParsedRecord)
    assert second == RejectedRecord(2, "an event must be a JSON object, not str", b'"e2"')
    assert isinstance(third, RejectedRecord)
    assert (third.record_no, third.reason) == (3, NUL_REASON)


# --- next cursor -----------------------------------------------------------------------------------------------------


def test_the_next_cursor_at_a_dotted_field():
    result = page({"data": [], "meta": {"paging": {"next_cursor": "c2"}}}, next_field="meta.paging.next_cursor")
    assert result.next_cursor == "c2"


def test_a_next_page_url_in_the_body():
    assert page({"data": [], "links": {"next": NEXT_URL}}, next_field="links.next").next_cursor == NEXT_URL


def test_an_integer_cursor_becomes_text():
    assert page({"data": [], "next": 42}).next_cursor == "42"
    assert page({"data": [], "next": 0}).next_cursor == "0"


@pytest.mark.parametrize("document", [{"data": []}, {"data": [], "next": None}, {"data": [], "next": ""}])
def test_a_missing_null_or_empty_cursor_means_no_next_page(document):
    assert page(document).next_cursor is None


def test_a_missing_parent_of_the_cursor_means_no_next_page():
    assert page({"data": []}, next_field="meta.next").next_cursor is None


def test_without_a_next_field_the_link_header_gives_the_next_page():
    assert page({"data": [], "next": "ignored"}, next_field=None, link_header_next=NEXT_URL).next_cursor == NEXT_URL


def test_without_a_next_field_or_link_header_there_is_no_next_page():
    assert page({"data": [], "next": "ignored"}, next_field=None).next_cursor is None


def test_an_empty_link_header_means_no_next_page():
    assert page({"data": []}, next_field=None, link_header_next="").next_cursor is None


def test_a_next_field_wins_over_the_link_header():
    assert page({"data": [], "next": "c2"}, link_header_next=NEXT_URL).next_cursor == "c2"
    assert page({"data": []}, link_header_next=NEXT_URL).next_cursor is None


# --- malformed pages -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"<html>Bad gateway</html>", b'{"data": [', b"\xff\xfe"])
def test_a_page_that_is_not_json_is_malformed(body):
    assert malformed(body).startswith("the page is not JSON")


@pytest.mark.parametrize(
    "document", [{"items": []}, {"data": {"id": "e1"}}, {"data": None}, {"data": "e1"}, [{"id": "e1"}]]
)
def test_a_page_without_a_list_at_the_records_field_is_malformed(document):
    assert malformed(orjson.dumps(document)) == "the page has no list of records at 'data'"


def test_a_top_level_page_that_is_not_a_list_is_malformed():
    assert malformed(b'{"data": []}', records_field="", next_field=None) == "the page has no list of records at ''"


@pytest.mark.parametrize("cursor", [{"id": "c2"}, ["c2"], 1.5])
def test_a_cursor_that_is_not_text_or_integer_is_malformed(cursor):
    body = orjson.dumps({"data": [], "meta": {"next": cursor}})
    assert malformed(body, next_field="meta.next") == "the next cursor at 'meta.next' is not a string"


@pytest.mark.parametrize("flag", [b"true", b"false"])
def test_a_boolean_next_cursor_is_a_malformed_page(flag: bytes):
    with pytest.raises(MalformedPage, match="not a string"):
        parse_page(b'{"data": [], "next": ' + flag + b"}", "data", "next")
