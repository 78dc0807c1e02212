"""The two kinds of failure every step distinguishes.

A `ReleaseError` is something a person must fix (bad input, a missing dependency, a failed
migration): retrying cannot help, so tasks fail at once with a message that names the problem and
what to do. A `TransientError` may pass by itself (a registry restarting, a socket timeout) and is
retried with backoff. Anything else is treated as transient only if it is a known network error.
"""

from __future__ import annotations


class ReleaseError(Exception):
    """A failure a person must fix; never retried."""


class TransientError(Exception):
    """A failure that may pass by itself; retried with backoff."""


class ChecksFailed(ReleaseError):
    """The released version did not pass its smoke checks."""
