"""Secrets named in a description come from a file or a variable, never from the YAML."""

import pytest

from domain.errors import ReleaseError
from targets.secrets import read_secret


class TestReadSecret:
    WHAT = "environment 'local' database"

    def test_from_file_without_trailing_newline(self, tmp_path):
        secret = tmp_path / "postgres.password"
        secret.write_text("s3cret\n")

        assert read_secret({"password_file": str(secret)}, self.WHAT) == "s3cret"

    def test_missing_file_says_stack_up_creates_it(self, tmp_path):
        missing = tmp_path / "postgres.password"

        with pytest.raises(ReleaseError) as error:
            read_secret({"password_file": str(missing)}, self.WHAT)

        assert str(error.value) == (
            f"{self.WHAT}: {missing} does not exist; `scripts/stack.sh up` creates it"
        )

    def test_from_environment_variable(self, monkeypatch):
        monkeypatch.setenv("FM_DB_PASSWORD", "s3cret")

        assert read_secret({"password_env": "FM_DB_PASSWORD"}, self.WHAT) == "s3cret"

    @pytest.mark.parametrize("value", [None, ""])
    def test_unset_or_empty_variable_names_it(self, monkeypatch, value):
        if value is None:
            monkeypatch.delenv("FM_DB_PASSWORD", raising=False)
        else:
            monkeypatch.setenv("FM_DB_PASSWORD", value)

        with pytest.raises(ReleaseError, match="set the environment variable FM_DB_PASSWORD"):
            read_secret({"password_env": "FM_DB_PASSWORD"}, self.WHAT)

    def test_neither_is_an_error_that_never_echoes_an_inline_password(self):
        with pytest.raises(ReleaseError, match="give password_file or password_env") as error:
            read_secret({"password": "hunter2"}, self.WHAT)

        assert "hunter2" not in str(error.value)
