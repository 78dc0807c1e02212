"""STS: which account and identity the pipeline acts as."""

from __future__ import annotations

from typing import Any


def caller(sts: Any) -> str:
    """verify's probe: the account and identity behind the block's credentials."""
    me = sts.get_caller_identity()
    return f"account {me['Account']} as {me['Arn']}"
