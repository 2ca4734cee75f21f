from dataclasses import fields
from datetime import date
from pathlib import Path

import pytest

from etl_assets.settings import (
    VARIABLES,
    ConfigError,
    QualitySettings,
    Settings,
    parse_database_url,
    printable_value,
    redact,
    segment_write_keys,
    with_driver,
)


def test_defaults_need_no_environment():
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert settings.ui_port == 3000
    assert settings.landing_bucket == "events-landing"
    assert settings.landing_prefix == "landing/"
    assert not settings.s3_is_external
    assert settings.warehouse_url.render_as_string() == "postgresql://postgres@127.0.0.1:5433/warehouse"


def test_database_url_accepts_the_postgres_alias_and_keeps_its_parts():
    url = parse_database_url("postgres://etl:secret@db.internal:6543/analytics")
    assert url.drivername == "postgresql"
    assert (url.host, url.port, url.database, url.username) == ("db.internal", 6543, "analytics", "etl")


def test_redact_hides_the_password():
    url = parse_database_url("postgresql://etl:s3cr3t@localhost/warehouse")
    assert "s3cr3t" not in redact(url)
    assert "etl" in redact(url)


def test_with_driver_names_the_driver_dagster_storage_needs():
    url = parse_database_url("postgresql://etl@localhost/dagster")
    assert with_driver(url, "psycopg2").render_as_string().startswith("postgresql+psycopg2://")


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a database URL"),
        ({"DATABASE_URL": "mysql://u@h/db"}, "needs PostgreSQL"),
        ({"DATABASE_URL": "postgresql://u@h"}, "names no database"),
        ({"ETL_UI_PORT": "http"}, "ETL_UI_PORT='http' is not a port number"),
        ({"ETL_PG_PORT": "70000"}, "ETL_PG_PORT=70000 is out of range"),
        ({"ETL_DB_MAX_OVERFLOW": "many"}, "ETL_DB_MAX_OVERFLOW='many' is not a whole number"),
        ({"ETL_LANDING_BUCKET": "Bad_Bucket"}, "not a valid S3 bucket name"),
        ({"AWS_ENDPOINT_URL_S3": "localhost:9000"}, "is not a URL"),
        ({"ETL_DB_POOL_SIZE": "-1"}, "ETL_DB_POOL_SIZE=-1 is out of range"),
        ({"ETL_QUALITY_MAX_REJECTED_SHARE": "5%"}, "ETL_QUALITY_MAX_REJECTED_SHARE='5%' is not a share"),
        ({"ETL_QUALITY_MAX_NULL_SHARE": "1.5"}, "ETL_QUALITY_MAX_NULL_SHARE='1.5' is not a share"),
        ({"ETL_FRESHNESS_WARN_MINUTES": "200"}, "is not below ETL_FRESHNESS_FAIL_MINUTES=120"),
        ({"ETL_ALERT_WEBHOOK_URL": "hooks.slack.com/secret-path"}, "ETL_ALERT_WEBHOOK_URL is not a URL (its value"),
    ],
)
def test_bad_configuration_is_one_line_that_says_what_to_do(env, fragment):
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    message = str(error.value)
    assert fragment in message
    assert "\n" not in message
    assert ":" in message  # what is wrong, then what to do


def test_an_endpoint_or_aws_credentials_mean_an_external_store():
    assert Settings.from_env({"AWS_ENDPOINT_URL_S3": "http://minio:9000"}).s3_is_external
    assert Settings.from_env({"AWS_ACCESS_KEY_ID": "AKIA"}).s3_is_external
    assert Settings.from_env({"AWS_ENDPOINT_URL_S3": "http://minio:9000"}).s3_endpoint_url == "http://minio:9000"


def test_landing_prefix_is_a_folder():
    assert Settings.from_env({"ETL_LANDING_PREFIX": "incoming"}).landing_prefix == "incoming/"


def test_etl_home_is_resolved(tmp_path: Path):
    assert Settings.from_env({"ETL_HOME": str(tmp_path / "x" / "..")}).etl_home == tmp_path


def test_printable_values_hide_database_passwords():
    assert (
        printable_value("DATABASE_URL", "postgresql://etl:s3cr3t@db/warehouse") == "postgresql://etl:***@db/warehouse"
    )
    assert "s3cr3t" not in printable_value("DAGSTER_PG_URL", "postgresql+psycopg2://etl:s3cr3t@db/dagster")
    assert printable_value("ETL_UI_PORT", "3001") == "3001"


def test_a_wrong_alert_webhook_url_is_reported_without_its_secret_value():
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"ETL_ALERT_WEBHOOK_URL": "hooks.slack.com/T000/B000/s3cr3t"})
    assert "s3cr3t" not in str(error.value)


def test_json_array_keys_are_a_list_of_top_level_keys():
    assert Settings.from_env({}).json_array_keys == ("events", "data", "records", "batch")
    assert Settings.from_env({"ETL_JSON_ARRAY_KEYS": " items, events ,items"}).json_array_keys == ("items", "events")
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"ETL_JSON_ARRAY_KEYS": "payload.events"})
    assert str(raised.value) == (
        "ETL_JSON_ARRAY_KEYS names 'payload.events': list top-level keys without dots, like events,data,records,batch"
    )


def test_pipeline_sensors_run_only_where_etl_dev_says_so():
    assert Settings.from_env({}).sensors_running is False
    assert Settings.from_env({"ETL_SENSORS_RUNNING": "true"}).sensors_running is True


def test_write_keys_name_their_sources_and_a_bare_key_stays_the_segment_source():
    env = {"ETL_SEGMENT_WRITE_KEYS": " wk_legacy , wk_shop=shop,wk_app = ios-app ,wk_shop=shop"}
    assert segment_write_keys(env) == {"wk_legacy": "segment", "wk_shop": "segment:shop", "wk_app": "segment:ios-app"}
    assert segment_write_keys({"ETL_SEGMENT_WRITE_KEYS": '{"wk_a": "shop", "wk_b": "app"}'}) == {
        "wk_a": "segment:shop",
        "wk_b": "segment:app",
    }
    assert segment_write_keys({}) == {} == segment_write_keys({"ETL_SEGMENT_WRITE_KEYS": " , "})


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("SECRET1=shop,=app", "entry 2 has no key"),
        ("SECRET1=", "entry 1 names its source ''"),
        ("SECRET1=shop/eu", "entry 1 names its source 'shop/eu'"),
        ("SECRET1=shop,SECRET1=app", "entry 2 repeats an earlier key"),
        ('{"SECRET1": ', "is not a JSON object"),
        ('{"SECRET1": 3}', "both strings"),
    ],
)
def test_a_bad_write_key_map_is_one_line_that_never_shows_a_key(raw: str, fragment: str):
    with pytest.raises(ConfigError) as error:
        segment_write_keys({"ETL_SEGMENT_WRITE_KEYS": raw})
    assert fragment in str(error.value) and "\n" not in str(error.value)
    assert "SECRET1" not in str(error.value)


def test_every_field_of_settings_is_declared_once_in_the_registry():
    names = [variable.name for variable in VARIABLES]
    assert len(names) == len(set(names))
    declared = {field.metadata["setting"].name for field in fields(Settings) if "setting" in field.metadata}
    declared |= {field.metadata["setting"].name for field in fields(QualitySettings)}
    assert declared <= set(names)
    undeclared = {field.name for field in fields(Settings) if not field.metadata}
    assert undeclared == {"s3_is_external"}  # worked out from the AWS variables, not a setting of its own


def test_a_default_is_the_declared_value_parsed():
    settings = Settings.from_env({})
    for variable in VARIABLES:
        if variable.parse is not None and variable.default is not None:
            assert variable.read({}) == variable.parse(variable.name, variable.default)
    assert settings.landing_run_max_bytes == 64 * 2**20
    assert settings.first_day == date(2025, 1, 1)
    assert settings == Settings()  # the dataclass's defaults are the declarations'


def test_etl_config_shows_each_default_as_written():
    shown = {variable.name: variable.default_text for variable in VARIABLES}
    assert shown["ETL_HOME"] == "<project>/.etl"
    assert shown["ETL_SENSORS_RUNNING"] == "unset (false)"
    assert shown["ETL_LANDING_RUN_MAX_BYTES"] == "67108864"
    assert shown["DATABASE_URL"] == shown["ETL_PII_KEY"] == "unset"


def test_an_area_reads_on_its_own():
    assert QualitySettings.from_env({"ETL_QUALITY_MIN_ROWS": "7"}).min_rows == 7
    assert Settings.from_env({"ETL_QUALITY_MIN_ROWS": "7"}).quality == QualitySettings(min_rows=7)
