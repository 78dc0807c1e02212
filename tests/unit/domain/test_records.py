from datetime import UTC, datetime

import pytest

from domain.records import (
    Built,
    ReleaseRecord,
    image_refs,
    kept_but_moved,
    kept_image,
    kept_images,
    known_sources,
    not_serving_previous,
    rollback_targets,
    start_record,
    why_nothing_to_do,
)
from domain.results import Backup, BuildSpec, PushedImage, Revision

EARLIER = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
NOW = datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)
IMAGES = {
    "backend": "127.0.0.1:5000/flowmasters/backend:1.2.0@sha256:aaa",
    "frontend": "127.0.0.1:5000/flowmasters/frontend:1.2.0@sha256:bbb",
}


def revision(service, version):
    return Revision(
        service=service,
        version=version,
        image=f"127.0.0.1:5000/flowmasters/{service}:{version}",
        image_id=f"sha256:{service}-{version}",
        revision_id=f"container-{service}-{version}",
    )


BEFORE_RELEASE = {"backend": revision("backend", "1.1.0"), "frontend": None}
HALF_RELEASED = {"backend": revision("backend", "1.2.0"), "frontend": None}
BACKUP = Backup(backup_id="staging-1.2.0", location="/backups/x.dump", size_bytes=10, detail="ok")


def latest(status="failed", version="1.2.0", images=IMAGES):
    return ReleaseRecord(
        release_id="staging-1.2.0-20240501090000",
        environment="staging",
        version=version,
        status=status,
        changed_environment=True,
        flow_run_id="run-1",
        started_at=EARLIER,
        updated_at=EARLIER,
        images=images,
        previous=BEFORE_RELEASE,
        schema_before=3,
        schema_after=4,
        backup=BACKUP,
        error="migration 0004 failed",
    )


def start(latest_record, version="1.2.0", images=IMAGES, environment="staging"):
    return start_record(
        latest=latest_record,
        environment=environment,
        version=version,
        images=images,
        previous=HALF_RELEASED,
        schema_before=4,
        now=NOW,
        flow_run_id="run-2",
    )


class TestStartRecord:
    @pytest.mark.parametrize("status", ["started", "failed", "checks_failed", "succeeded"])
    def test_rerun_of_same_release_continues_the_latest_record(self, status):
        record = start(latest(status=status))

        assert record.release_id == "staging-1.2.0-20240501090000"
        assert record.previous == BEFORE_RELEASE
        assert record.backup == BACKUP
        assert record.schema_before == 3
        assert record.started_at == EARLIER
        assert record.status == "started"
        assert record.flow_run_id == "run-2"
        assert record.updated_at == NOW
        assert record.error is None

    @pytest.mark.parametrize(
        ("latest_record", "version", "images", "environment"),
        [
            (None, "1.2.0", IMAGES, "staging"),
            (latest(), "1.3.0", IMAGES, "staging"),
            (latest(), "1.2.0", {**IMAGES, "backend": "r/backend:1.2.0@sha256:ccc"}, "staging"),
            (latest(status="rolled_back"), "1.2.0", IMAGES, "staging"),
            (latest(), "1.2.0", IMAGES, "prod"),
        ],
        ids=["no-latest", "other-version", "other-images", "rolled-back", "other-environment"],
    )
    def test_anything_else_starts_a_new_record(self, latest_record, version, images, environment):
        record = start(latest_record, version, images, environment)

        assert record == ReleaseRecord(
            release_id=f"{environment}-{version}-20240501102030",
            environment=environment,
            version=version,
            status="started",
            changed_environment=False,
            flow_run_id="run-2",
            started_at=NOW,
            updated_at=NOW,
            images=images,
            previous=HALF_RELEASED,
            schema_before=4,
            schema_after=None,
            backup=None,
            error=None,
        )


def test_image_refs_pin_each_service_to_its_digest():
    pushed = PushedImage(
        service="backend",
        repository="127.0.0.1:5000/flowmasters/backend",
        tag="1.2.0",
        digest="sha256:aaa",
        image_id="sha256:img",
        pushed=True,
    )

    assert image_refs([pushed]) == {
        "backend": "127.0.0.1:5000/flowmasters/backend:1.2.0@sha256:aaa"
    }
    assert image_refs([]) == {}


class TestRollbackDecisions:
    def test_each_service_returns_to_what_ran_before_and_a_new_one_stays(self):
        assert rollback_targets(latest(), None, ["frontend", "backend"]) == {
            "frontend": None,  # nothing ran before this release
            "backend": "1.1.0",
        }

    def test_to_version_sends_every_service_there(self):
        assert rollback_targets(latest(), "1.0.0", ["frontend", "backend"]) == {
            "frontend": "1.0.0",
            "backend": "1.0.0",
        }

    @pytest.mark.parametrize(
        ("record", "release_id", "to_version", "why"),
        [
            (None, None, None, "no release was recorded for this environment"),
            (
                latest(),
                "staging-1.1.0-20240101000000",
                None,
                "release staging-1.1.0-20240101000000 is no longer the latest "
                "(staging-1.2.0-20240501090000 is): not rolling back over a newer release",
            ),
            (
                latest().model_copy(update={"changed_environment": False}),
                None,
                None,
                "release staging-1.2.0-20240501090000 failed before it changed anything",
            ),
            (
                latest("succeeded").model_copy(update={"changed_environment": False}),
                None,
                None,
                "release staging-1.2.0-20240501090000 changed nothing: it found every service "
                "on its version",
            ),
            (
                latest(status="rolled_back"),
                None,
                "1.0.0",
                "release staging-1.2.0-20240501090000 was already rolled back",
            ),
        ],
        ids=[
            "nothing-recorded",
            "newer-release",
            "failed-before-any-change",
            "released-no-change",
            "already-rolled-back",
        ],
    )
    def test_why_there_is_nothing_to_do(self, record, release_id, to_version, why):
        assert why_nothing_to_do(record, release_id, to_version) == why

    @pytest.mark.parametrize(
        ("record", "release_id", "to_version"),
        [
            (latest(), "staging-1.2.0-20240501090000", None),
            (latest(), None, None),
            (latest().model_copy(update={"changed_environment": False}), None, "1.0.0"),
            (None, None, "1.0.0"),  # named: the flow then says no release was recorded
        ],
    )
    def test_otherwise_it_goes_ahead(self, record, release_id, to_version):
        assert why_nothing_to_do(record, release_id, to_version) is None

    def test_a_crash_before_the_run_recorded_anything_undoes_no_earlier_release(self):
        """The automation's rollback of a crashed run: the latest record (run-1's, an earlier
        release) is not the crashed run's, so that release must stay as it is."""
        record = latest(status="succeeded")

        assert why_nothing_to_do(record, None, crashed_run="prefect.flow-run.run-9") == (
            "the crashed release run run-9 had recorded nothing (the latest record, "
            "staging-1.2.0-20240501090000, is another run's): it changed nothing"
        )
        assert why_nothing_to_do(record, None, crashed_run="prefect.flow-run.run-1") is None


def test_not_serving_previous_names_each_service_on_another_image():
    previous = {
        "backend": revision("backend", "v1"),
        "frontend": revision("frontend", "v1"),
        "worker": None,
    }
    live = {
        "backend": revision("backend", "v1"),
        "frontend": revision("frontend", "v2"),
        "worker": None,
    }

    assert not_serving_previous(previous, live) == ["frontend serves v2, not v1"]
    assert not_serving_previous(previous, {**live, "frontend": None}) == [
        "frontend serves nothing, not v1"
    ]
    assert not_serving_previous(previous, {**live, "frontend": revision("frontend", "v1")}) == []


def build(name, context="ctx", **args):
    return BuildSpec(
        service=name,
        context_dir=f"/src/{name}",
        dockerfile="Dockerfile",
        repository=f"flowmasters/{name}",
        version="1.3.0",
        build_args={"APP_VERSION": "ignored", **args},
        context_digest=f"sha256:{context}",
        target="migrator" if name.endswith("-migrator") else None,
    )


OWNERS = {"backend-migrator": "backend", "backend": "backend", "frontend": "frontend"}
BUILDS = [build("backend-migrator"), build("backend"), build("frontend", context="new")]
SERVED = {
    "backend": "127.0.0.1:5000/flowmasters/backend:1.2.0@sha256:aaa",
    "backend-migrator": "127.0.0.1:5000/flowmasters/backend-migrator:1.2.0@sha256:ccc",
    "frontend": "127.0.0.1:5000/flowmasters/frontend:1.2.0@sha256:bbb",
}
LIVE = {"backend": revision("backend", "1.2.0"), "frontend": revision("frontend", "1.2.0")}


def knowing(**keys: str) -> ReleaseRecord:
    """A record that knows `image:1.2.0` (each image in SERVED) was built from `keys[image]`."""
    sources = {
        f"{image.replace('_', '-')}:1.2.0": Built(key=key, image=SERVED[image.replace("_", "-")])
        for image, key in keys.items()
    }
    return latest(status="succeeded", images=SERVED).model_copy(update={"sources": sources})


BACKEND_SAME = {"backend": BUILDS[1].source_key, "backend_migrator": BUILDS[0].source_key}


class TestKeptImages:
    def test_a_service_serving_an_image_of_the_same_source_keeps_it_and_its_migrator(self):
        record = knowing(**BACKEND_SAME, frontend=build("frontend", context="old").source_key)

        kept = kept_images(BUILDS, OWNERS, LIVE, record)

        assert [(k.service, k.reference, k.digest, k.kept) for k in kept] == [
            (
                "backend-migrator",
                "127.0.0.1:5000/flowmasters/backend-migrator:1.2.0",
                "sha256:ccc",
                True,
            ),
            ("backend", "127.0.0.1:5000/flowmasters/backend:1.2.0", "sha256:aaa", True),
        ]

    def test_a_changed_migrator_source_rebuilds_the_whole_service(self):
        record = knowing(backend=BUILDS[1].source_key, backend_migrator="sha256:other")

        assert kept_images(BUILDS, OWNERS, LIVE, record) == []

    def test_a_version_whose_source_is_not_known_is_built(self):
        """E.g. what ran before the first release that recorded sources."""
        record = knowing(**BACKEND_SAME)
        older = {**LIVE, "backend": revision("backend", "1.1.0")}

        assert kept_images(BUILDS[:2], OWNERS, older, record) == []

    def test_nothing_is_kept_without_a_record_or_a_live_revision(self):
        record = knowing(**BACKEND_SAME)

        assert kept_images(BUILDS[:2], OWNERS, LIVE, None) == []
        assert kept_images(BUILDS[:2], OWNERS, {"backend": None}, record) == []

    def test_a_version_name_reused_for_another_image_is_not_trusted(self):
        record = knowing(**BACKEND_SAME)
        other = {**LIVE, "backend": LIVE["backend"].model_copy(update={"image": "elsewhere:1.2.0"})}

        assert kept_images(BUILDS[:2], OWNERS, other, record) == []

    def test_the_version_alone_does_not_make_a_source_differ(self):
        a, b = build("backend"), build("backend").model_copy(update={"version": "9.9.9"})
        b = b.model_copy(update={"build_args": {"APP_VERSION": "9.9.9"}})

        assert a.source_key == b.source_key
        assert a.source_key != build("backend", NEXT_PUBLIC_URL="x").source_key
        assert a.source_key != build("backend", context="other").source_key


def test_a_record_keeps_what_it_knew_of_the_images_serving_now_and_adds_its_own():
    """So a release that fails and switches back still tells the next what v1.2.0 was made of."""
    record = knowing(**BACKEND_SAME, frontend="sha256:f")
    record.sources["backend:1.0.0"] = Built(key="sha256:gone", image="x/backend:1.0.0@sha256:0")
    released = {"frontend:1.3.0": Built(key="sha256:new", image="x/frontend:1.3.0@sha256:1")}

    known = known_sources(record, OWNERS, LIVE, released)

    assert sorted(known) == [
        "backend-migrator:1.2.0",
        "backend:1.2.0",
        "frontend:1.2.0",
        "frontend:1.3.0",
    ]


def test_a_kept_service_that_switched_since_the_plan_is_named():
    kept = [kept_image("backend", SERVED["backend"])]
    now = {**LIVE, "backend": revision("backend", "1.4.0")}

    assert kept_but_moved(kept, OWNERS, LIVE, LIVE) == []
    assert kept_but_moved(kept, OWNERS, LIVE, now) == ["backend serves 1.4.0, not 1.2.0"]
