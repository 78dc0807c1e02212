"""The real stack (examples/flowmasters-payload: Payload CMS 3 and Next.js) through the pipeline,
on a real Docker-host environment, in the order a team would meet it:

v1 to an empty environment -> a dev-push record refused before anything is built -> v2's migration
failing (exit 1) on a schema that drifted leaves schema and versions as they were -> v2 (a
migration adds a field) under load from wrk, with no failed request -> rollback with migrate_down returns both services and the
schema; an upload made at v1 is still served at every step.

Then the same images in a second environment whose media go to S3 (Payload's S3 storage adapter,
as the AWS template configures it) instead of a volume: an upload survives two releases and a
rollback, and lives in the bucket, not in any container.

The tests share their environments and run in file order. Nothing is faked: Node images built from
the lock files, Payload's own CLI in the migrator image, PostgreSQL, HAProxy, the Prefect server.
S3 is moto's server (real HTTP on 127.0.0.1; no machine here may reach AWS), which the backend's
AWS SDK talks to as it would to S3.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import docker
import httpx
import pytest
from moto.server import ThreadedMotoServer

from flows.release import release
from flows.rollback import rollback
from targets.docker_host.cdn import asset_paths
from testbed.scratch import create_environment, new_code, remove_environment
from testbed.wrk import Wrk
from tests.integration.conftest import TestEnvironment, task_states
from tests.support import admin, stack
from tests.support.browser import chromium, new_page, screenshot_on_failure
from tests.support.payload import REAL_STACK, V1, V2, Editor, until_shown

REPO = Path(__file__).resolve().parents[3]
APP = REPO / "examples" / "flowmasters-payload"
OVERLAYS = REPO / "tests" / "fixtures" / "payload"
INITIAL = "20261202_011058_initial"
STORAGE = "20261202_044906_media_storage_fields"  # the S3 storage plugin's columns, always there
SUMMARY = "20261202_044927_page_summary"  # v2's
VERSION_IN_PAGE = 'data%-dpl%-id="([^"]+)"'  # Next.js stamps the deployment id (our version)


def served_version(html: str) -> str | None:
    found = re.search(r'data-dpl-id="([^"]+)"', html)
    return found.group(1) if found else None


RUN = uuid.uuid4().hex[:6]
pytestmark = REAL_STACK


@pytest.fixture(scope="module")
def cms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestEnvironment]:
    """A fresh environment described like `local` (the real stack), with its own database."""
    workdir = tmp_path_factory.mktemp("cms")
    scratch = create_environment("it-cms", workdir, app="flowmasters-payload", base_on="local")
    try:
        yield TestEnvironment(scratch.name, scratch.source, scratch.description)
    finally:
        remove_environment(scratch.name, scratch.database)


def source(env: TestEnvironment, variant: str | None) -> Path:
    """A copy of the app with an overlay of tests/fixtures/payload (None: the app as committed)."""
    path = env.source.parent / (variant or "committed")
    if not path.exists():
        shutil.copytree(env.source, path)
        if variant:
            shutil.copytree(OVERLAYS / variant, path, dirs_exist_ok=True)
    return path


def run(env: TestEnvironment, version: str, variant: str | None = None):
    code = new_code(source(env, variant), version)
    state = release(env.name, version, str(code), return_state=True)
    return state, state.state_details.flow_run_id


def sql(env: TestEnvironment, query: str) -> list[str]:
    db = env.description["target"]["database"]
    result = subprocess.run(
        ["psql", "-X", "-A", "-t", "-c", query],
        env={
            **os.environ,
            "PGHOST": db["host"],
            "PGPORT": str(db["port"]),
            "PGUSER": db["username"],
            "PGDATABASE": db["database"],
            "PGPASSWORD": Path(db["password_file"]).read_text().strip(),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in result.stdout.splitlines() if line]


def applied(env: TestEnvironment) -> list[str]:
    return sql(env, "SELECT name || ':' || batch FROM payload_migrations ORDER BY id")


def columns(env: TestEnvironment, table: str) -> set[str]:
    return set(
        sql(env, f"SELECT column_name FROM information_schema.columns WHERE table_name='{table}'")
    )


def versions(env: TestEnvironment) -> tuple[str, str, str]:
    """(backend, frontend, backend as the frontend sees it), from their health answers."""
    front = env.health("frontend")
    return env.health("backend")["version"], front["version"], front["backend"]["version"]


def table_by_reader(env: TestEnvironment, image: str) -> list[str]:
    """payload_migrations as the app's table_command prints it (what the AWS target reads, in a
    one-off task), run here in `image` against the environment's real database."""
    db = env.description["target"]["database"]
    password = Path(db["password_file"]).read_text().strip()
    url = f"postgres://{db['username']}:{password}@{db['host']}:{db['port']}/{db['database']}"
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    try:
        out = client.containers.run(
            image,
            ["node", "scripts/migration-table.mjs", "payload_migrations", "name", "batch"],
            environment={"DATABASE_URL": url},
            network_mode="host",
            labels={"flowmasters.environment": env.name},
            remove=True,
        )
    finally:
        client.close()
    rows = json.loads(out.decode().strip().splitlines()[-1])["rows"]
    return [f"{name}:{batch}" for name, batch in rows]


SEEN: dict[str, str] = {}  # what an earlier test of this module made (it runs in file order)
LOGO = b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes * 64  # any bytes: Payload stores them as given


@pytest.fixture(scope="module")
def editor(cms: TestEnvironment) -> Editor:
    return Editor(cms.url("backend"))


def test_v1_of_the_real_stack_to_an_empty_environment(cms: TestEnvironment, editor: Editor):
    state, _ = run(cms, V1)

    assert state.is_completed(), state.message
    assert versions(cms) == (V1, V1, V1)
    assert applied(cms) == [f"{INITIAL}:1", f"{STORAGE}:1"]
    record = cms.record()
    assert record.migrations_applied == [INITIAL, STORAGE]
    assert set(record.images) == {"backend", "backend-migrator", "frontend"}
    for image in ("backend-migrator", "backend"):  # the AWS table reader, in both images
        assert table_by_reader(cms, record.images[image]) == applied(cms), image


def test_an_editor_starts_in_the_admin_of_v1(cms: TestEnvironment, editor: Editor, tmp_path):
    """Payload's admin in a real browser, as an editor meets it on an empty site: the first user
    through the form, out and back in, an image through the admin's upload field, a page with
    rich text; the page is then on the public site. A blank admin (a stale import map) fails
    the first step."""
    backend, frontend = cms.url("backend"), cms.url("frontend")
    image = admin.png()
    started = time.monotonic()
    with chromium() as browser:
        page = new_page(browser)
        with screenshot_on_failure(page, tmp_path / "admin.png"):
            admin.create_first_user(page, backend, editor.email, editor.password)
            admin.log_out(page, backend)
            admin.log_in(page, backend, editor.email, editor.password)
            admin.upload_image(page, backend, f"square-{RUN}.png", image, alt=f"square {RUN}")
            admin.create_page(page, backend, f"Hello {RUN}", f"hello-{RUN}", f"Typed in {RUN}.")
    saved = time.monotonic()
    print(f"\nthe admin, from its first page to the page saved: {saved - started:.1f}s")

    article = until_shown(f"{frontend}/hello-{RUN}", f"Typed in {RUN}.")
    home = until_shown(f"{frontend}/", f"Hello {RUN}")
    print(f"on the public site after the save: its page {article:.2f}s, the home page {home:.2f}s")
    found = httpx.get(f"{backend}/api/media", params={"where[alt][equals]": f"square {RUN}"})
    (doc,) = found.json()["docs"]
    assert editor.media(doc["filename"]) == image


def test_v1_serves_an_upload_and_a_page_made_through_the_api(cms: TestEnvironment, editor: Editor):
    editor.log_in()
    SEEN["logo"] = editor.upload(f"logo-{RUN}.png", LOGO)
    editor.add_page(title="Welcome", slug=f"welcome-{RUN}")
    until_shown(cms.url("frontend") + "/", "Welcome")


def test_the_cdn_never_gives_an_editors_pages_to_anyone_else(
    cms: TestEnvironment, editor: Editor, tmp_path
):
    """Logged in, an editor loads the admin and the API through the CDN; then a visitor without
    the editor's cookie asks for the same URLs, three times each: nothing of the editor's comes
    back, and nothing private is ever answered from the cache."""
    backend = cms.url("backend")
    private = ["/admin", "/admin/collections/pages", "/admin/account", "/api/users/me"]
    with chromium() as browser:
        page = new_page(browser)
        with screenshot_on_failure(page, tmp_path / "leak.png"):
            admin.log_in(page, backend, editor.email, editor.password)
            for path in private:
                page.goto(f"{backend}{path}")
            me = page.context.request.get(f"{backend}/api/users/me").json()
    assert me["user"]["email"] == editor.email, "the editor was not logged in: nothing tested"

    answers = [httpx.get(f"{backend}{path}", timeout=30) for path in private * 3]
    for answer in answers:
        assert editor.email not in answer.text, f"{answer.url} leaked the editor's page"
        assert answer.headers.get("x-cache") == "MISS", f"{answer.url} came from the cache"
    assert httpx.get(f"{backend}/api/users/me", timeout=30).json()["user"] is None


def test_only_the_backend_may_ask_the_frontend_to_render_its_pages_again(cms: TestEnvironment):
    """POST /revalidate takes the shared secret only (Payload's page hooks send it): anyone
    else is refused, and nothing of the secret is in the answer."""
    url = cms.url("frontend") + "/revalidate"
    answers = [
        httpx.post(url, timeout=30),
        httpx.post(url, headers={"x-revalidate-secret": "a-guess"}, timeout=30),
    ]

    assert [a.status_code for a in answers] == [401, 401], [a.text for a in answers]
    assert all(a.json() == {"revalidated": False, "error": "missing or wrong x-revalidate-secret"}
               for a in answers)  # fmt: skip


def test_a_dev_push_record_is_refused_before_anything_is_built(cms: TestEnvironment):
    sql(cms, "INSERT INTO payload_migrations (name, batch) VALUES ('dev', -1)")
    try:
        state, flow_run_id = run(cms, f"push-{RUN}", "v2")
    finally:
        sql(cms, "DELETE FROM payload_migrations WHERE batch = -1")

    assert state.is_failed()
    assert "development 'push' record in payload_migrations (dev, batch -1)" in state.message
    assert "DELETE FROM payload_migrations WHERE batch = -1" in state.message
    assert not any(name.startswith(("build-", "push-")) for name in task_states(flow_run_id))
    assert versions(cms) == (V1, V1, V1)
    assert "summary" not in columns(cms, "pages")


def test_a_failing_migration_leaves_schema_and_versions_unchanged(cms: TestEnvironment):
    """v2's migration (`ALTER TABLE pages ADD COLUMN summary`) meets a schema that drifted: the
    column is there already, added by hand, so `payload migrate` exits 1. These are the images
    the next tests release (built once for the run), not a broken app built for this case."""
    sql(cms, "ALTER TABLE pages ADD COLUMN summary varchar")
    drifted = columns(cms, "pages")
    try:
        state, _ = run(cms, V2, "v2")
        after = columns(cms, "pages")
    finally:
        sql(cms, "ALTER TABLE pages DROP COLUMN summary")

    assert state.is_failed()
    assert "migrate" in state.message and "exited 1" in state.message
    assert applied(cms) == [f"{INITIAL}:1", f"{STORAGE}:1"]
    assert after == drifted, "the failed migration changed the schema"
    assert versions(cms) == (V1, V1, V1)


def test_a_visitor_loads_a_page_of_v1_with_its_assets(cms: TestEnvironment):
    page = httpx.get(cms.url("frontend") + "/", timeout=30)
    assets = asset_paths(page.text)

    assert served_version(page.text) == V1
    assert assets, "v1's page refers to no static asset: nothing to test"
    for asset in assets:
        assert httpx.get(cms.url("frontend") + asset, timeout=30).status_code == 200, asset
    SEEN["v1 assets"] = json.dumps(assets)


def test_v2_with_a_new_field_under_load_fails_no_request(cms: TestEnvironment, editor: Editor):
    with (
        Wrk(cms.url("frontend") + "/", connections=10, version_pattern=VERSION_IN_PAGE) as front,
        Wrk(cms.url("backend") + "/api/pages?limit=10&depth=0", connections=10) as api,
    ):
        state, _ = run(cms, V2, "v2")

    assert state.is_completed(), state.message
    for load in (front.result, api.result):
        print(load.summary())
        assert load.failed == 0, load.summary()
        assert load.requests >= 100, load.summary()
    assert set(front.result.versions) == {V1, V2}, "the switch happened under the load"
    assert versions(cms) == (V2, V2, V2)
    assert applied(cms) == [f"{INITIAL}:1", f"{STORAGE}:1", f"{SUMMARY}:2"]
    assert cms.record().migrations_applied == [SUMMARY]
    assert table_by_reader(cms, cms.record().images["backend-migrator"]) == applied(cms)
    editor.add_page(title="News", slug=f"news-{RUN}", summary="served by v2")
    until_shown(cms.url("frontend") + "/", "served by v2")
    assert editor.media(SEEN["logo"]) == LOGO


def test_the_page_of_v1_still_loads_every_asset_after_v2_went_live(cms: TestEnvironment):
    """Version skew: a visitor still on v1's page asks for its assets after the switch. v2's
    build does not have all of them (its client code differs); the CDN keeps them (the edge step
    fetched each when v1 went live, and they are immutable)."""
    v1_assets = json.loads(SEEN["v1 assets"])
    page = httpx.get(cms.url("frontend") + "/", timeout=30)
    gone = set(v1_assets) - set(asset_paths(page.text))

    assert served_version(page.text) == V2, "the CDN answered v1's page after the switch"
    assert gone, "v1 and v2 refer to the same assets: this test could not fail"
    answers = {a: httpx.get(cms.url("frontend") + a, timeout=30) for a in v1_assets}
    assert {a: r.status_code for a, r in answers.items() if r.status_code != 200} == {}


def test_rollback_returns_both_services_and_the_schema(cms: TestEnvironment, editor: Editor):
    result = rollback(cms.name, migrate_down=True)

    assert result["status"] == "rolled back", result
    assert versions(cms) == (V1, V1, V1)
    assert applied(cms) == [f"{INITIAL}:1", f"{STORAGE}:1"]
    assert "summary" not in columns(cms, "pages")
    assert editor.media(SEEN["logo"]) == LOGO
    assert "Welcome" in httpx.get(cms.url("frontend") + "/", timeout=30).text


def test_v2_again_after_the_rollback_reapplies_its_migration_without_a_build(
    cms: TestEnvironment, editor: Editor
):
    state, flow_run_id = run(cms, V2, "v2")

    assert state.is_completed(), state.message
    built = {n: s for n, s in task_states(flow_run_id).items() if n.startswith("build-")}
    assert built and set(built.values()) == {"Cached"}, built
    assert versions(cms) == (V2, V2, V2)
    assert applied(cms) == [f"{INITIAL}:1", f"{STORAGE}:1", f"{SUMMARY}:2"]
    assert editor.media(SEEN["logo"]) == LOGO, "the upload survived two releases and a rollback"


# -- media on S3 (the AWS template's way), the same images in a second environment ---------------

BUCKET = f"fm-media-{RUN}"


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bucket(s3_url: str):
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_url,
        region_name="us-east-1",
        aws_access_key_id="AKIAFMMEDIATEST00001",
        aws_secret_access_key="fm-media-secret-key-test",
    )
    s3.create_bucket(Bucket=BUCKET)
    return s3


@pytest.fixture(scope="module")
def cms_s3(
    tmp_path_factory: pytest.TempPathFactory, s3_url: str, bucket
) -> Iterator[TestEnvironment]:
    """Described like `local`, but the backend stores media in BUCKET (no media volume), with
    the bucket's keys given as secrets, as ECS gives its task role's."""
    workdir = tmp_path_factory.mktemp("cms-s3")
    keys = {
        "AWS_ACCESS_KEY_ID": "AKIAFMMEDIATEST00001",
        "AWS_SECRET_ACCESS_KEY": "fm-media-secret-key-test",
    }

    def to_s3(name: str, description: dict) -> None:
        backend = next(s for s in description["services"] if s["name"] == "backend")
        backend.pop("volumes", None)
        backend["env"] = {
            **backend.get("env", {}),
            "MEDIA_BUCKET": BUCKET,
            "MEDIA_S3_ENDPOINT": s3_url,
            "AWS_REGION": "us-east-1",
        }
        for variable, value in keys.items():
            block = f"{name}-{variable.lower().replace('_', '-')}"
            (workdir / block).write_text(value)
            description.setdefault("secrets", {})[block] = {"password_file": str(workdir / block)}
            backend["secret_env"][variable] = block

    scratch = create_environment(
        "it-cms-s3", workdir, app="flowmasters-payload", base_on="local", edit=to_s3
    )
    try:
        yield TestEnvironment(scratch.name, scratch.source, scratch.description)
    finally:
        remove_environment(scratch.name, scratch.database)


def redis_cli(*args: str) -> str:
    stack = Path(os.environ["FM_STACK_DIR"])
    password = (stack / "secrets" / "redis-password").read_text().strip()
    port = os.environ["FM_REDIS_PORT"]
    command = ["redis-cli", "-p", port, "--no-auth-warning", "-a", password, *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def test_the_site_keeps_answering_while_its_shared_cache_is_away(cms: TestEnvironment):
    """Redis (the frontend's shared cache) stopped in the middle of load that passes the CDN (a
    cookie: every request reaches the frontend, which asks Redis each time) and started again:
    no request fails, and the frontend stores its pages in Redis again once it is back."""
    url = cms.url("frontend") + "/"
    with Wrk(url, connections=10, delay_ms=10, headers={"Cookie": "visitor=1"}) as load:
        time.sleep(2)
        stack.stop("redis")
        time.sleep(3)
        stack.start_again()
        time.sleep(3)

    print(load.result.summary())
    assert load.result.failed == 0, load.result.summary()
    assert load.result.requests >= 200, load.result.summary()
    until = time.monotonic() + 15
    while not redis_cli("--scan", "--pattern", f"fm:{cms.name}:{V2}:*"):
        assert time.monotonic() < until, "the frontend did not use Redis again after it came back"
        httpx.get(url, headers={"Cookie": "visitor=1"}, timeout=30)
        time.sleep(0.5)


def test_media_on_s3_survive_two_releases_and_a_rollback(cms: TestEnvironment, cms_s3, bucket):
    """The images of the tests above (same versions, same sources: their layers are reused)."""
    editor = Editor(cms_s3.url("backend"))
    state = release(cms_s3.name, V1, str(source(cms, None)), return_state=True)
    assert state.is_completed(), state.message
    editor.sign_up()
    logo = editor.upload(f"s3-logo-{RUN}.png", LOGO)
    stored = bucket.get_object(Bucket=BUCKET, Key=logo)["Body"].read()
    assert stored == LOGO, "the upload is in the bucket"
    assert not cms_s3.containers(service="backend")[0].attrs["Mounts"], "and in no volume"

    state = release(cms_s3.name, V2, str(source(cms, "v2")), return_state=True)
    assert state.is_completed(), state.message
    assert editor.media(logo) == LOGO
    result = rollback(cms_s3.name, migrate_down=True)
    assert result["status"] == "rolled back", result
    assert versions(cms_s3) == (V1, V1, V1)
    assert editor.media(logo) == LOGO, "the upload survived two releases and a rollback"
