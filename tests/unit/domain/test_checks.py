import pytest

from domain.checks import ProbeSpec, expected_versions, field, judge

URL = "http://127.0.0.1:8081/api/health"
VERSIONED = ProbeSpec(service="backend", path="/api/health")
STATUS_ONLY = ProbeSpec(service="frontend", path="/", version_field=None)
NESTED = ProbeSpec(service="frontend", path="/api/info", version_field="backend.version")


class TestJudge:
    def test_healthy_answer_with_released_version_passes(self):
        assert judge(VERSIONED, URL, "1.2.0", 200, {"version": "1.2.0", "ok": True}) is None

    @pytest.mark.parametrize("probe", [VERSIONED, STATUS_ONLY])
    def test_non_200_names_url_and_status(self, probe):
        problem = judge(probe, URL, "1.2.0", 503, {"version": "1.2.0"})

        assert problem == "http://127.0.0.1:8081/api/health answered HTTP 503"

    @pytest.mark.parametrize(
        ("body", "served"), [({"version": "1.1.0"}, "'1.1.0'"), ({}, "None"), (None, "None")]
    )
    def test_version_mismatch_names_field_served_and_expected(self, body, served):
        problem = judge(VERSIONED, URL, "1.2.0", 200, body)

        assert problem == (
            f"http://127.0.0.1:8081/api/health serves version {served} at `version`, "
            "expected '1.2.0'"
        )

    def test_without_version_field_only_status_matters(self):
        assert judge(STATUS_ONLY, URL, "1.2.0", 200, None) is None

    def test_nested_version_field(self):
        assert judge(NESTED, URL, "1.2.0", 200, {"backend": {"version": "1.2.0"}}) is None
        assert judge(NESTED, URL, "1.2.0", 200, {"backend": {"version": "1.1.0"}}) == (
            "http://127.0.0.1:8081/api/health serves version '1.1.0' at `backend.version`, "
            "expected '1.2.0'"
        )


@pytest.mark.parametrize(
    ("document", "dotted", "expected"),
    [
        ({"version": "1.2.0"}, "version", "1.2.0"),
        ({"backend": {"version": "1.1.0"}}, "backend.version", "1.1.0"),
        ({"backend": "1.1.0"}, "backend.version", None),
        ({"backend": {}}, "backend.version", None),
        ({"count": 0}, "count", 0),
        (["version"], "version", None),
        (None, "version", None),
    ],
)
def test_field(document, dotted, expected):
    assert field(document, dotted) == expected


class TestExpectedVersions:
    """A release keeps a service whose source did not change, so each probe must show the
    version of the service it reports on."""

    VERSIONS = {"backend": "v1", "frontend": "v2"}

    def test_each_probe_expects_the_version_of_the_service_it_reports_on(self):
        expected = expected_versions((VERSIONED, STATUS_ONLY, NESTED), self.VERSIONS)

        assert [(p.service, p.path, v) for p, v in expected] == [
            ("backend", "/api/health", "v1"),
            ("frontend", "/", "v2"),
            ("frontend", "/api/info", "v1"),  # `backend.version`: the backend's
        ]

    def test_version_of_names_the_service_outright(self):
        probe = ProbeSpec(
            service="frontend", path="/x", version_field="api.v", version_of="backend"
        )
        dotted_but_no_service = ProbeSpec(service="frontend", path="/y", version_field="build.v")

        assert probe.expects(list(self.VERSIONS)) == "backend"
        assert dotted_but_no_service.expects(list(self.VERSIONS)) == "frontend"
