import pytest

from deployments.register import expand, load_description, read_description
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


class TestDescriptionFiles:
    """A description kept beside a team's app (`--file`), and this repository's own."""

    def test_a_relative_source_is_taken_from_the_files_folder(self, tmp_path):
        app = tmp_path / "acme-site"
        (app / "deploy").mkdir(parents=True)
        path = app / "deploy" / "local.yaml"
        path.write_text("source: ..\ntarget: {type: docker-host}\nservices: []\n")

        assert read_description(path)["source"] == str(app)

    def test_this_repositorys_descriptions_keep_their_source_relative_to_its_root(self):
        # What the worker's working directory and a git checkout are both rooted at.
        assert load_description("local")["source"] == "examples/flowmasters-payload"
        assert load_description("sandbox")["source"] == "examples/flowmasters"

    def test_an_unknown_section_is_refused_with_the_known_ones(self, tmp_path):
        path = tmp_path / "web.yaml"
        path.write_text("target: {type: docker-host}\nservices: []\nservice: []\n")

        with pytest.raises(ReleaseError, match=r"unknown section\(s\) \['service'\]; the sections"):
            read_description(path)

    def test_a_missing_file_says_what_to_give(self, tmp_path):
        with pytest.raises(ReleaseError, match=r"no environment description at .*nope\.yaml"):
            read_description(tmp_path / "nope.yaml")
