"""Errors of the corral client: one class per code word of the Function
library's error replies (docs/protocol.md), all under CorralError.

An error reply from the library begins with a code word ("NOQUEUE unknown
queue ..."); CODE_CLASSES maps each word to its class, and a word this
client does not know (Redis's generic ERR among them) gives ServerError.
The client raises the same classes for what it refuses before sending,
with the server's message for the same input."""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Type

import redis.exceptions as rx

__all__ = [
    "CorralError", "ServerError", "InvalidArgumentError", "InvalidQueueNameError",
    "UnknownQueueError", "UnknownServiceError", "InvalidPayloadError", "PayloadTooLargeError",
    "InvalidOptionError", "InvalidSettingError", "NoSuchJobError", "JobStateError",
    "JobRunningError", "JobFinishedError", "JobNotDeadError", "WaitTimeoutError",
    "InvalidTenantError", "CODE_CLASSES", "error_from_reply",
]


class CorralError(Exception):
    """Base of every error the client raises for corral.

    code: the code word ("NOQUEUE", "ERR" for Redis's generic word);
    message: the text after it, for people (match on the class or code,
    never on the text)."""

    code: str = "ERR"
    #: enqueue_many only: ids of the jobs of earlier batches, enqueued before
    #: this error's batch was refused (each batch of up to 1,000 is all or
    #: nothing; the list as a whole is not).
    enqueued: List[int]
    #: enqueue_many only: index in the list of the refused batch's first
    #: payload (the server numbers payloads from 1 within a batch).
    batch_start: int

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.enqueued = []
        self.batch_start = 0

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


class ServerError(CorralError):
    """An error reply whose code word this client does not know: Redis's
    own (ERR, NOPERM, OOM, READONLY, ...) or one newer than the client."""


class InvalidArgumentError(CorralError):
    """A call's arguments are malformed (a caller's bug): no key, too many
    arguments, more than 1,000 payloads in one corral_enqueue_many, ..."""
    code = "BADARG"


class InvalidQueueNameError(CorralError):
    """A queue name (or service name, or key prefix) that is not 1-64
    characters of A-Z a-z 0-9 _ . : -"""
    code = "BADNAME"


class UnknownQueueError(CorralError):
    """The queue was never declared by corrald or corralctl."""
    code = "NOQUEUE"


class UnknownServiceError(CorralError):
    """The service was never declared."""
    code = "NOSERVICE"


class InvalidPayloadError(CorralError):
    """A payload that is missing, not JSON, or (client side) not
    JSON-serialisable."""
    code = "BADPAYLOAD"


class PayloadTooLargeError(CorralError):
    """A payload over the queue's max_payload."""
    code = "TOOBIG"


class InvalidOptionError(CorralError):
    """Options that are not an object, an unknown option, or a bad value."""
    code = "BADOPTION"


class InvalidTenantError(InvalidOptionError):
    """The option tenant is not 1-64 bytes of A-Z a-z 0-9 _ . : @ -
    (docs/protocol.md, "Tenants"); an InvalidOptionError too."""
    code = "BADTENANT"
class InvalidTokensError(InvalidOptionError):
    """The enqueue option tokens is not a whole number from 1 to 10^9 (an
    InvalidOptionError with a code word of its own, BADTOKENS)."""
    code = "BADTOKENS"
class InvalidDeadlineError(InvalidOptionError):
    """The option deadline_ms is not a positive integer of milliseconds."""
    code = "BADDEADLINE"


class InvalidSettingError(CorralError):
    """Queue or service settings that are not a JSON object, unknown, out
    of range or contradicting each other (corral_declare)."""
    code = "BADSETTING"


class NoSuchJobError(CorralError):
    """No job of that id: never enqueued, or its record expired."""
    code = "NOJOB"


class JobStateError(CorralError):
    """The job is in a state that does not allow the call: the base of
    JobRunningError, JobFinishedError and JobNotDeadError (catch it for
    all three)."""


class JobRunningError(JobStateError):
    """The job is running: it cannot be cancelled."""
    code = "RUNNING"


class JobFinishedError(JobStateError):
    """The job already ended (done or cancelled)."""
    code = "FINISHED"


class JobNotDeadError(JobStateError):
    """The job is not dead, so it cannot be retried."""
    code = "NOTDEAD"


class WaitTimeoutError(CorralError):
    """wait() ran out of time before the job ended (raised by the client,
    never by the server)."""
    code = "TIMEOUT"


# The one table from code word to class: the library's words
# (docs/protocol.md "Error replies", queue/codes.c). Redis's own words
# (ERR, NOPERM, OOM, ...) and any word newer than this client raise
# ServerError with their code.
CODE_CLASSES: Dict[str, Type[CorralError]] = {
    "BADARG": InvalidArgumentError,
    "BADNAME": InvalidQueueNameError,
    "NOQUEUE": UnknownQueueError,
    "NOSERVICE": UnknownServiceError,
    "BADPAYLOAD": InvalidPayloadError,
    "TOOBIG": PayloadTooLargeError,
    "BADOPTION": InvalidOptionError,
    "BADSETTING": InvalidSettingError,
    "NOJOB": NoSuchJobError,
    "RUNNING": JobRunningError,
    "FINISHED": JobFinishedError,
    "NOTDEAD": JobNotDeadError,
    "BADTENANT": InvalidTenantError,
    "BADTOKENS": InvalidTokensError,
    "BADDEADLINE": InvalidDeadlineError,
}

# redis-py takes these words off the reply and raises its own class instead.
_REDIS_PY_WORDS = [
    (rx.NoPermissionError, "NOPERM"),
    (rx.ReadOnlyError, "READONLY"),
    (rx.BusyLoadingError, "LOADING"),
    (rx.NoScriptError, "NOSCRIPT"),
    (rx.ExecAbortError, "EXECABORT"),
]

_WORD = re.compile(r"([A-Z][A-Z0-9_]+) (.*)", re.S)


def error_from_reply(exc: rx.ResponseError) -> CorralError:
    """The CorralError for an error reply as redis-py raised it.

    redis-py strips the word ERR (and the words of _REDIS_PY_WORDS) from the
    text and keeps any other: an upper-case first word is the code word."""
    text = str(exc)
    for cls, word in _REDIS_PY_WORDS:
        if isinstance(exc, cls):
            return ServerError(text, word)
    m = _WORD.match(text)
    if m is None:
        return ServerError(text, "ERR")
    word, message = m.group(1), m.group(2)
    return CODE_CLASSES.get(word, ServerError)(message, word)

