"""The package's errors: every error accessdrift raises on purpose derives from AccessdriftError."""

from __future__ import annotations

from accessdrift.models.text import printable


class AccessdriftError(Exception):
    """Root of every error accessdrift raises on purpose.

    `retryable` says whether repeating the same call may succeed (a broker that is not up yet);
    `retry_after_s` suggests how long to wait first, when known.
    """

    retryable: bool = False
    retry_after_s: float | None = None


class ContractError(AccessdriftError, ValueError):
    """An input record breaks the event contract.

    `where` names the field (empty when the whole record is at fault); `reason` says what is wrong.
    """

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}" if where else reason)


class ConfigError(AccessdriftError, ValueError):
    """A settings file cannot be used; the message names the file and the field to fix."""

    def __init__(self, path: str, field: str, reason: str) -> None:
        self.path = path
        self.field = field
        self.reason = reason
        shown = printable(path)
        location = f"{shown}: {field}" if field else shown
        super().__init__(f"{location}: {reason}")


class PolicyError(ConfigError):
    """A policy file cannot be used; the message names the file and the field to fix."""


class BrokerError(AccessdriftError, RuntimeError):
    """The Kafka broker could not be started or reached; the message says what to check."""

    def __init__(
        self, message: str, *, retryable: bool = False, retry_after_s: float | None = None
    ):
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        super().__init__(message)
