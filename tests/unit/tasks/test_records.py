"""Which failures of the Prefect API the record's steps treat as transient (retried) and what
they say. The answers are httpx objects made here, not a server."""

from __future__ import annotations

import httpx
import pytest

from domain.errors import TransientError
from tasks.records import prefect_api

URL = "http://127.0.0.1:4200/api/variables/name/flowmasters-release-local"


def failing(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("PATCH", URL)
    answer = httpx.Response(status, request=request)
    return httpx.HTTPStatusError(f"{status}", request=request, response=answer)


def test_a_server_error_is_transient_and_names_the_server():
    with pytest.raises(TransientError) as caught, prefect_api("writing the record"):
        raise failing(500)
    assert str(caught.value).startswith(
        "the Prefect API answered 500 while writing the record; if it keeps failing, check the "
        "Prefect server"
    )


def test_a_dropped_connection_is_transient():
    with pytest.raises(TransientError) as caught, prefect_api("reading"):
        raise httpx.ConnectError("refused")
    assert "unreachable while reading (ConnectError)" in str(caught.value)


def test_a_client_error_is_not_retried():
    with pytest.raises(httpx.HTTPStatusError), prefect_api("writing"):
        raise failing(422)
