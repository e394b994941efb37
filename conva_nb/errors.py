"""The package's two deliberate error kinds; anything else is a bug and keeps its traceback.

:class:`UsageError` is bad input — a value, file, setting or option that is not valid —
with a message naming what was wrong and what is valid (the CLI exits 2).
:class:`ServiceError` is an outside service (an OpenAI-compatible server, the hub) that
cannot be reached or keeps failing (the CLI prints one line and exits 1).
"""
from __future__ import annotations

__all__ = ["UsageError", "ServiceError"]


class UsageError(ValueError):
    """Bad input: the message names what was wrong and what is valid."""


class ServiceError(RuntimeError):
    """An outside service could not be reached or kept failing."""
