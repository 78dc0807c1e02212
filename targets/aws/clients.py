"""boto3 clients, error translation and bounded polling shared by the AWS modules."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError

from domain.errors import ReleaseError, TransientError
from targets.runlog import run_logger

P = ParamSpec("P")
R = TypeVar("R")

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "ServerException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)
# AWS's answers to keys that are wrong, revoked or expired (per protocol: query, JSON, S3, EC2).
CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "AuthFailure",
    }
)
CREDENTIALS_HINT = (
    "they are wrong, revoked or expired. Put valid keys (and a fresh session token, if they are "
    "temporary) in the environment's AwsCredentials block `<environment>-aws`: set the variables "
    "its description's target.credentials names and run `python -m deployments.register "
    "<environment>`, or edit the block in the Prefect UI; then run again. Nothing was changed"
)
PROVISION_HINT = "run the provision step (or create the CloudFormation stack) first"
# botocore logs request headers and response bodies at DEBUG: the session token, the signing
# material and ECR's registry password would end up in any DEBUG log handler.
WIRE_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")


def logger() -> logging.Logger | logging.LoggerAdapter:
    return run_logger("flowmasters.aws")


def quiet_wire_logs() -> None:
    """Cap the SDK's wire logs at INFO unless someone configured their level on purpose."""
    for name in WIRE_LOGGERS:
        log = logging.getLogger(name)
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def credential_code(code: str, message: str) -> str | None:
    """The credential failure an answer reports, if any. Some endpoints (moto, for JSON
    services) put the code only in the message's XML, under a bare HTTP status."""
    if code in CREDENTIAL_CODES:
        return code
    return next((c for c in sorted(CREDENTIAL_CODES) if f"<Code>{c}</Code>" in message), None)


def translate(exc: Exception, what: str) -> Exception:
    """A ReleaseError (a person must act) or TransientError (may pass) for an SDK failure."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if rejected := credential_code(code, message):
            return ReleaseError(
                f"{what}: AWS rejected the credentials ({rejected}): {CREDENTIALS_HINT}"
            )
        if code in TRANSIENT_CODES or status >= 500:
            return TransientError(f"{what}: AWS answered {code or status} ({message}); retrying")
        return ReleaseError(f"{what}: AWS refused with {code}: {message}")
    if isinstance(exc, NoCredentialsError):
        return ReleaseError(f"{what}: no AWS credentials; fill in the block's AwsCredentials")
    if isinstance(exc, BotoConnectionError | ReadTimeoutError):
        return TransientError(f"{what}: AWS endpoint unreachable ({exc.__class__.__name__})")
    if isinstance(exc, ResponseParserError):
        return TransientError(
            f"{what}: the AWS endpoint's answer is not an AWS response ({str(exc)[:200]}); "
            "if the credentials block's endpoint_url points at a stand-in such as moto, the "
            "stand-in cannot do this"
        )
    return ReleaseError(f"{what}: {exc}")


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        raise translate(exc, what) from exc


def translated(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a Target method: SDK failures leave it as ReleaseError or TransientError."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            with aws_errors(what):
                return fn(*args, **kwargs)

        return inner

    return wrap


def poll(
    what: str,
    probe: Callable[[], tuple[bool, Any, str]],
    timeout: float,
    interval: float,
    log: Callable[[str], None],
    hint: Callable[[], str] = lambda: "",
) -> Any:
    """Call `probe` every `interval` seconds until it says done; log its progress each time.

    `probe` returns (done, value, progress). Past `timeout`, a ReleaseError names `what`, the
    last progress seen and `hint()`.
    """
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        done, value, progress = probe()
        if done:
            return value
        waited = time.monotonic() - started
        if time.monotonic() >= deadline:
            extra = hint()
            raise ReleaseError(
                f"{what} did not complete in {timeout:g}s; last seen: {progress}"
                + (f"; {extra}" if extra else "")
            )
        log(f"{what}: {progress} ({waited:.0f}s)")
        time.sleep(interval)
