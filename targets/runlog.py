"""The logger targets write progress to: the Prefect run's logger inside a flow or task run (so
the lines land in the Prefect server), a plain named logger outside one (tests, scripts)."""

from __future__ import annotations

import logging

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger


def run_logger(fallback: str = "flowmasters") -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(fallback)
