"""ETL_DB_SSLMODE / ETL_DB_SSLROOTCERT: parsed once, wrong values are one line that says what to do."""

from pathlib import Path

import pytest

from etl_assets.settings import ConfigError, Settings, parse_database_url, with_ssl


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def config_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    message = str(error.value)
    assert "\n" not in message
    assert ":" in message  # what is wrong, then what to do
    return message


def test_unset_means_libpq_defaults():
    settings = Settings.from_env({})
    assert (settings.db_sslmode, settings.db_sslrootcert) == (None, None)
    assert settings.db_ssl_params == {}


def test_a_bad_sslmode_is_one_line():
    message = config_error({"ETL_DB_SSLMODE": "on"})
    assert message.startswith("ETL_DB_SSLMODE='on' is not an sslmode")
    assert "verify-full" in message


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_a_verifying_mode_needs_a_root_certificate(mode: str):
    message = config_error({"ETL_DB_SSLMODE": mode})
    assert message.startswith(f"ETL_DB_SSLMODE={mode} needs ETL_DB_SSLROOTCERT")


def test_a_root_certificate_that_does_not_exist_is_one_line(tmp_path: Path):
    missing = tmp_path / "nowhere" / "ca.crt"
    message = config_error({"ETL_DB_SSLMODE": "verify-full", "ETL_DB_SSLROOTCERT": str(missing)})
    assert message.startswith(f"ETL_DB_SSLROOTCERT={str(missing)!r} does not exist")


def test_a_root_certificate_that_is_a_folder_is_one_line(tmp_path: Path):
    message = config_error({"ETL_DB_SSLROOTCERT": str(tmp_path)})
    assert "is not a file" in message


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])
def test_every_libpq_sslmode_is_accepted(mode: str, ca_file: Path):
    settings = Settings.from_env({"ETL_DB_SSLMODE": mode, "ETL_DB_SSLROOTCERT": str(ca_file)})
    assert settings.db_ssl_params == {"sslmode": mode, "sslrootcert": str(ca_file)}


def test_the_root_certificate_path_is_made_absolute(ca_file: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ca_file.parent)
    settings = Settings.from_env({"ETL_DB_SSLMODE": "require", "ETL_DB_SSLROOTCERT": "ca.crt"})
    assert settings.db_sslrootcert == ca_file.resolve()


def test_tls_parameters_join_a_url_but_the_url_wins(ca_file: Path):
    params = Settings.from_env({"ETL_DB_SSLMODE": "verify-full", "ETL_DB_SSLROOTCERT": str(ca_file)}).db_ssl_params
    plain = with_ssl(parse_database_url("postgresql://etl@db/warehouse"), params)
    assert dict(plain.query) == params
    own = with_ssl(parse_database_url("postgresql://etl@db/warehouse?sslmode=require"), params)
    assert dict(own.query) == {"sslmode": "require", "sslrootcert": str(ca_file)}
    assert with_ssl(parse_database_url("postgresql://etl@db/warehouse"), {}).query == {}
