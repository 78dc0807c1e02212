"""How SDK failures reach the user: a ReleaseError (act) or a TransientError (retried)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from botocore.parsers import ResponseParserError

from domain.errors import ReleaseError, TransientError
from targets.aws.clients import aws_errors


def client_error(code: str, status: int, message: str = "no") -> ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Op")


@pytest.mark.parametrize(
    ("raised", "expected", "text"),
    [
        (client_error("AccessDenied", 403, "not allowed"), ReleaseError,
         "provision: AWS refused with AccessDenied: not allowed"),
        (client_error("Throttling", 400), TransientError, "provision: AWS answered Throttling"),
        (client_error("Whatever", 503), TransientError, "provision: AWS answered Whatever"),
        (NoCredentialsError(), ReleaseError, "provision: no AWS credentials"),
        (client_error("InvalidClientTokenId", 403, "The security token included in the "
                      "request is invalid."), ReleaseError,
         "provision: AWS rejected the credentials (InvalidClientTokenId): they are wrong, "
         "revoked or expired. Put valid keys"),
        (client_error("ExpiredToken", 400, "The security token included in the request is "
                      "expired"), ReleaseError,
         "provision: AWS rejected the credentials (ExpiredToken)"),
        (client_error("403", 403, "<?xml version='1.0'?><ErrorResponse><Errors><Error><Code>"
                      "UnrecognizedClientException</Code></Error></Errors></ErrorResponse>"),
         ReleaseError, "provision: AWS rejected the credentials (UnrecognizedClientException)"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), TransientError,
         "provision: AWS endpoint unreachable"),
        (ResponseParserError("invalid XML received"), TransientError,
         "provision: the AWS endpoint's answer is not an AWS response (invalid XML received)"),
    ],
)  # fmt: skip
def test_sdk_failures_become_messages_that_say_what_failed(raised, expected, text):
    with pytest.raises(expected) as caught, aws_errors("provision"):
        raise raised

    assert type(caught.value) is expected
    assert str(caught.value).startswith(text)
