import re
import shutil

import pytest

from domain.errors import ReleaseError
from targets.build_context import digest_context, ignore_patterns, included_files


def write(root, files):
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


@pytest.fixture
def context(tmp_path):
    root = tmp_path / "backend"
    write(
        root,
        {
            ".dockerignore": "# build context\n**/__pycache__\n*.log\n",
            "Dockerfile": "FROM python:3.12-slim\nCOPY . /app\n",
            "server.py": "print('hello')\n",
            "migrations/0001.up.sql": "CREATE TABLE pages (id int);\n",
        },
    )
    return root


class TestIgnorePatterns:
    def test_skips_comments_and_blank_lines_and_trailing_slashes(self, tmp_path):
        write(tmp_path, {".dockerignore": "# comment\n\nnode_modules/\n  *.log  \n!keep.log\n"})

        assert ignore_patterns(tmp_path) == ["node_modules/", "*.log", "!keep.log"]

    def test_no_dockerignore_means_no_patterns(self, tmp_path):
        assert ignore_patterns(tmp_path) == []


class TestIncludedFiles:
    """What a build receives, decided by docker-py's own .dockerignore matcher."""

    @pytest.mark.parametrize(
        ("relative", "patterns", "ignored"),
        [
            ("app.log", ["*.log"], True),
            ("server.py", ["*.log"], False),
            ("__pycache__/server.cpython-312.pyc", ["__pycache__"], True),
            ("pkg/__pycache__/mod.pyc", ["**/__pycache__"], True),
            (".git/HEAD", [".git"], True),
            ("node_modules/a/index.js", ["node_modules"], True),
            ("docs/a.txt", ["docs/*.txt"], True),
            ("README.md", ["!README.md"], False),
            ("server.py", [], False),
            ("sub/app.log", ["*.log"], False),
            ("app/tests/test_x.py", ["tests"], False),
            ("docs/sub/a.txt", ["docs/*.txt"], False),
            ("README.md", ["*.md", "!README.md"], False),
            ("__pycache__/x.pyc", ["**/__pycache__"], True),
            ("x.pyc", ["**/*.pyc"], True),
            ("Dockerfile", ["Dockerfile"], False),
        ],
    )
    def test_matches_like_the_docker_build_context(self, tmp_path, relative, patterns, ignored):
        write(tmp_path, {relative: "x", ".dockerignore": "\n".join(patterns) + "\n"})

        assert (relative not in included_files(tmp_path)) is ignored


class TestDigestContext:
    def test_is_a_sha256_that_depends_on_content_not_location(self, context, tmp_path):
        copy = shutil.copytree(context, tmp_path / "copy")

        digest = digest_context(context)

        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
        assert digest_context(copy) == digest

    def test_changes_when_a_file_changes(self, context):
        before = digest_context(context)
        write(context, {"server.py": "print('hello, world')\n"})

        assert digest_context(context) != before

    def test_changes_when_a_file_is_added(self, context):
        before = digest_context(context)
        write(context, {"migrations/0002.up.sql": "ALTER TABLE pages ADD title text;\n"})

        assert digest_context(context) != before

    def test_changes_when_a_file_is_renamed(self, context):
        before = digest_context(context)
        (context / "server.py").rename(context / "app.py")

        assert digest_context(context) != before

    def test_changes_when_the_exec_bit_changes(self, context):
        before = digest_context(context)
        (context / "server.py").chmod(0o755)

        assert digest_context(context) != before

    def test_changes_when_dockerignore_changes(self, context):
        before = digest_context(context)
        write(context, {".dockerignore": "**/__pycache__\n"})

        assert digest_context(context) != before

    @pytest.mark.parametrize(
        "ignored", ["__pycache__/server.cpython-312.pyc", "debug.log", "migrations/__pycache__/x"]
    )
    def test_unchanged_when_an_ignored_file_changes_or_appears(self, context, ignored):
        before = digest_context(context)
        write(context, {ignored: "first"})
        assert digest_context(context) == before

        write(context, {ignored: "second"})
        assert digest_context(context) == before

    def test_changes_when_an_ignored_dockerfile_changes(self, context):
        write(context, {".dockerignore": "Dockerfile\n.dockerignore\n*.md\n"})
        before = digest_context(context)
        write(context, {"Dockerfile": "FROM python:3.13-slim\nCOPY . /app\n"})

        assert digest_context(context) != before

    def test_changes_when_a_nested_file_docker_sends_changes(self, context):
        # `*.log` only matches at the context root: the build sees static/app.log.
        write(context, {"static/app.log": "v1"})
        before = digest_context(context)
        write(context, {"static/app.log": "v2"})

        assert digest_context(context) != before

    def test_missing_context_is_a_release_error_naming_it(self, tmp_path):
        missing = tmp_path / "nope"

        with pytest.raises(ReleaseError) as error:
            digest_context(missing)

        assert str(missing) in str(error.value)

    def test_file_instead_of_folder_is_a_release_error(self, context):
        with pytest.raises(ReleaseError):
            digest_context(context / "server.py")
