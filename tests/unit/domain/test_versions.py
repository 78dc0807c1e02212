import pytest

from domain.errors import ReleaseError
from domain.versions import Source, choose_version, normalize_version

SHA = "3f2c9e1b7a6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b"
DIGEST = "sha256:" + "ab12cd34ef56" + "0" * 52


class TestNormalizeVersion:
    @pytest.mark.parametrize(
        ("requested", "expected"),
        [
            (2, "2"),
            ("2", "2"),
            (" 1.4.0 ", "1.4.0"),
            ("1234567890" * 4, "1234567890" * 4),
            ("v1.2.3-rc.1", "v1.2.3-rc.1"),
            ("_build_7", "_build_7"),
            ("a" * 128, "a" * 128),
        ],
    )
    def test_valid_versions_become_strings(self, requested, expected):
        assert normalize_version(requested) == expected

    @pytest.mark.parametrize("requested", [None, "", "   "])
    def test_no_version(self, requested):
        assert normalize_version(requested) is None

    @pytest.mark.parametrize(
        "requested", ["latest", "has space", "-leading", ".leading", "a" * 129, "1.0/beta", "x:1"]
    )
    def test_invalid_versions_are_release_errors_naming_them(self, requested):
        with pytest.raises(ReleaseError) as error:
            normalize_version(requested)

        assert repr(requested) in str(error.value)


class TestChooseVersion:
    def source(self, git_sha=SHA, dirty=False):
        return Source(path="/srv/app", git_sha=git_sha, dirty=dirty)

    @pytest.mark.parametrize(("requested", "expected"), [("1.2.0", "1.2.0"), (7, "7")])
    def test_explicit_version_wins_over_clean_git(self, requested, expected):
        assert choose_version(requested, self.source(), DIGEST) == expected

    @pytest.mark.parametrize("requested", [None, ""])
    def test_clean_git_gives_short_sha(self, requested):
        assert choose_version(requested, self.source(), DIGEST) == "3f2c9e1b7a6d"

    @pytest.mark.parametrize(
        ("git_sha", "dirty"), [(SHA, True), (None, True), (None, False)], ids=["dirty", "no-git", "no-git-clean"]
    )  # fmt: skip
    def test_dirty_or_no_git_gives_dev_version_from_digest(self, git_sha, dirty):
        version = choose_version(None, self.source(git_sha, dirty), DIGEST)

        assert version == "dev-ab12cd34ef56"
        assert normalize_version(version) == version

    def test_invalid_explicit_version_is_not_replaced_by_the_sha(self):
        with pytest.raises(ReleaseError):
            choose_version("latest", self.source(), DIGEST)
