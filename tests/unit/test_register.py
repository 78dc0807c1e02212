import pytest

from deployments.register import expand, read_secret
from targets.errors import ReleaseError


class TestExpand:
    def test_environment_variable_wins(self, monkeypatch):
        monkeypatch.setenv("FM_REGISTRY_PORT", "5999")

        assert expand("127.0.0.1:${FM_REGISTRY_PORT}") == "127.0.0.1:5999"

    def test_falls_back_to_defaults(self, monkeypatch):
        monkeypatch.delenv("FM_STACK_DIR", raising=False)
        monkeypatch.delenv("FM_POSTGRES_PORT", raising=False)

        assert expand("${FM_STACK_DIR}/db:${FM_POSTGRES_PORT}") == "/var/lib/flowmasters/db:5433"

    def test_unknown_unset_variable_is_a_release_error_naming_it(self, monkeypatch):
        monkeypatch.delenv("FM_NOT_SET", raising=False)

        with pytest.raises(ReleaseError, match=r"\$\{FM_NOT_SET\}"):
            expand({"target": {"registry": "${FM_NOT_SET}"}})

    def test_nested_dicts_and_lists(self, monkeypatch):
        monkeypatch.setenv("FM_STACK_DIR", "/tmp/stack")
        monkeypatch.setenv("FM_ENV", "staging")

        description = {
            "target": {"proxy_dir": "${FM_STACK_DIR}/proxy", "port_base": 9100},
            "services": [{"name": "backend", "env": {"APP_ENV": "${FM_ENV}"}}, None, True],
        }

        assert expand(description) == {
            "target": {"proxy_dir": "/tmp/stack/proxy", "port_base": 9100},
            "services": [{"name": "backend", "env": {"APP_ENV": "staging"}}, None, True],
        }


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
