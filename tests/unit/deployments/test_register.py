import pytest

from deployments.register import expand
from domain.errors import ReleaseError


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
