"""What Client and AsyncClient share: the checks made before a round trip
(with the Function library's own messages, queue/corral.lua), the FCALL
arguments, and the parsing of replies. No I/O here."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from .errors import (InvalidOptionError, InvalidPayloadError, InvalidQueueNameError,
                     InvalidTenantError, InvalidTokensError, NoSuchJobError, WaitTimeoutError)

#: Most payloads corral_enqueue_many takes in one call.
MAX_BATCH = 1000
#: States a job ends in.
FINAL_STATES = frozenset(("done", "dead", "cancelled"))
OPTION_NAMES = ("priority", "delay_ms", "max_attempts", "timeout_ms", "service", "unique_key",
                "tenant", "tokens", "deadline_ms")
_KNOWN = ", ".join(OPTION_NAMES)
# The integer options and their ranges, as corral_enqueue checks them.
_INT_RANGES = {"delay_ms": (0, 366 * 86400000), "max_attempts": (1, 1000),
               "timeout_ms": (1, 86400000)}
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z", re.A)
_TENANT = re.compile(r"[A-Za-z0-9_.:@-]{1,64}\Z", re.A)

JobId = Union[int, str]


def _cut(text: str, nbytes: int) -> str:
    """text cut to nbytes bytes of UTF-8, as Lua's sub() cuts it and as
    redis-py decodes the error reply holding it."""
    return text.encode("utf-8", "surrogatepass")[:nbytes].decode("utf-8", "replace")


def _lua_number(v: float) -> str:
    """A number as Lua's tostring prints it (%.14g)."""
    try:
        f = float(v)
    except OverflowError:
        f = math.inf if v > 0 else -math.inf
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if math.isnan(f):
        return "nan"
    return "%.14g" % f


def _shown(v: Any) -> Optional[str]:
    """A value as corral.lua's shown() writes it in a message, or None
    where the client cannot know the exact text (a list or an object)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _lua_number(v)
    if isinstance(v, str):
        return v
    return None


def queue_key(prefix: str, queue: str) -> str:
    """The one key of every call: "<prefix>:{<queue>}" (the prefixed form
    matches ACL key patterns such as ~corral:*; docs/operations.md)."""
    if not isinstance(queue, str):
        raise TypeError(f"queue must be a str, got {type(queue).__name__}")
    if not _NAME.match(queue):
        raise InvalidQueueNameError(
            f'bad queue name "{_cut(queue, 80)}": use 1-64 characters of A-Z a-z 0-9 _ . : -')
    return f"{prefix}:{{{queue}}}"


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    if not _NAME.match(prefix):
        raise InvalidQueueNameError(f'bad key prefix "{_cut(prefix, 80)}"')
    return prefix


def job_id_text(job_id: JobId) -> str:
    """A job id as sent: an int, or its decimal text."""
    if isinstance(job_id, bool) or not isinstance(job_id, (int, str)):
        raise TypeError(f"job id must be an int or a str, got {type(job_id).__name__}")
    return str(job_id)


def _json(value: Any) -> bytes:
    # Compact, strict (no NaN or Infinity: the library refuses them) and
    # UTF-8, so the bytes sent are the bytes the queue's max_payload counts.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def payload_bytes(queue: str, payload: Any, where: str = "payload") -> bytes:
    """The payload as JSON text, or InvalidPayloadError before anything is
    sent when it cannot be written as JSON."""
    try:
        return _json(payload)
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidPayloadError(f'queue "{queue}": {where} is not JSON-serialisable ({e})') \
            from None


def options_bytes(queue: str, options: Mapping[str, Any]) -> bytes:
    """The options object as JSON text, after the checks the client can
    make with the library's own message; the rest (priority names, which
    depend on the queue's settings, and numbers written as text) is left to
    the library."""
    for name, v in options.items():
        if name not in OPTION_NAMES:
            raise InvalidOptionError(f'queue "{queue}": unknown option "{name}" (known: {_KNOWN})')
        if name in _INT_RANGES:
            lo, hi = _INT_RANGES[name]
            if v is None or isinstance(v, bool) or (
                    isinstance(v, (int, float)) and
                    (isinstance(v, float) and not v.is_integer() or not lo <= v <= hi)):
                raise InvalidOptionError(
                    f"{name} must be an integer from {lo} to {hi}, got {_shown(v)[:40]}")
        elif name == "service":
            shown = _shown(v)
            if shown is not None and not (isinstance(v, str) and _NAME.match(v)):
                raise InvalidOptionError(
                    f'queue "{queue}": bad service name "{_cut(shown, 64)}"')
        elif name == "tokens":  # a list or an object: the library's message
            shown = _shown(v)
            if shown is not None and (
                    isinstance(v, bool) or not isinstance(v, (int, float)) or
                    not (1 <= v <= 1000000000 and float(v).is_integer())):
                raise InvalidTokensError(
                    f'queue "{queue}": tokens must be a whole number from 1 to 1000000000, '
                    f'got {shown[:40]}')
        elif name == "unique_key":
            if not isinstance(v, str) or not 1 <= len(v.encode("utf-8", "surrogatepass")) <= 256:
                raise InvalidOptionError(
                    f'queue "{queue}": unique_key must be a string of 1 to 256 bytes')
        elif name == "tenant":
            if not (isinstance(v, str) and _TENANT.match(v)):
                raise InvalidTenantError(
                    f'queue "{queue}": bad tenant "{_cut(str(_shown(v)), 80)}": use 1-64 bytes '
                    "of A-Z a-z 0-9 _ . : @ -")
    try:
        return _json(dict(options))
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidOptionError(f'queue "{queue}": options are not JSON-serialisable ({e})') \
            from None


def batches(queue: str, payloads: Iterable[Any], options: Mapping[str, Any]) \
        -> Tuple[bytes, List[List[bytes]]]:
    """corral_enqueue_many's options argument and the payloads in batches
    of MAX_BATCH, every payload written as JSON before anything is sent."""
    if isinstance(payloads, (str, bytes, dict)):
        raise TypeError("payloads must be a list (or another iterable) of payloads")
    payloads = list(payloads)
    n = len(payloads)
    data = [payload_bytes(queue, p, f"payload {i + 1} of {n}") for i, p in enumerate(payloads)]
    opts = options_bytes(queue, options) if options else b""
    return opts, [data[i:i + MAX_BATCH] for i in range(0, n, MAX_BATCH)]


def timeout_arg(timeout: Optional[float]) -> str:
    """BLMOVE's timeout in seconds ("0" blocks for ever)."""
    if timeout is None:
        return "0"
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
            not timeout > 0 or math.isinf(timeout):
        raise ValueError(f"timeout must be a number of seconds above 0, or None, got {timeout!r}")
    return "%.3f" % max(timeout, 0.001)


def no_job(queue: str, job_id: str) -> NoSuchJobError:
    return NoSuchJobError(f'queue "{queue}": no job {job_id} (never enqueued, or its record '
                          f'expired after result_ttl)')


def wait_timeout(queue: str, job_id: str, timeout: Optional[float]) -> WaitTimeoutError:
    return WaitTimeoutError(
        f'queue "{queue}": job {job_id} did not end within {round((timeout or 0) * 1000)} ms')


#: How long one XREAD of follow() blocks before it looks at the job again (ms).
FOLLOW_POLL_MS = 250
#: The end entries after which a run's stream has nothing more: the answer
#: is complete (the result follows) or the job was cancelled. After "failed"
#: the job may be retried and stream again under the next run number.
FOLLOW_LAST_ENDS = frozenset(("complete", "cancelled"))


class Piece(str):
    """A piece of a streamed answer's text, as follow() yields it: a str,
    with .run, the job's run number it was streamed in (a retried job
    streams its answer again, from the start, under the next number)."""

    run: int

    def __new__(cls, text: str, run: int) -> "Piece":
        piece = super().__new__(cls, text)
        piece.run = run
        return piece


def piece(fields: Mapping[str, str]) -> Piece:
    """The Piece of a stream entry that has text."""
    try:
        run = int(fields.get("run") or 0)
    except ValueError:
        run = 0
    return Piece(fields["text"], run)


def follow_block_ms(end: Optional[float], now: float) -> int:
    """How long follow's next XREAD blocks (ms): FOLLOW_POLL_MS, less when
    the deadline `end` (time.monotonic(), None: none) is nearer; 0 or less
    when it has passed."""
    if end is None:
        return FOLLOW_POLL_MS
    return int(min(FOLLOW_POLL_MS / 1000, end - now) * 1000)


def follow_read_args(stream_key: str, last: str, ended: bool, block_ms: int) -> List[Any]:
    """The XREAD of follow(): blocking while the job has not ended, at
    once for what is left of its stream when it has."""
    wait = [] if ended else ["BLOCK", max(block_ms, 1)]
    return ["XREAD", "COUNT", 1000, *wait, "STREAMS", stream_key, last]


def stream_entries(reply: Any) -> List[Tuple[str, Dict[str, str]]]:
    """The entries of an XREAD reply of one stream as (id, fields), text
    decoded whether the connection decodes replies or not."""
    out: List[Tuple[str, Dict[str, str]]] = []
    if isinstance(reply, dict):  # RESP3: {key: entries}
        reply = reply.items()
    for _, entries in reply or []:
        for eid, fields in entries:
            pairs = fields.items() if isinstance(fields, dict) else \
                zip(fields[::2], fields[1::2])
            out.append((text(eid), {text(a): text(b) for a, b in pairs}))
    return out


def text(v: Any) -> Optional[str]:
    """A reply as str, whether the connection decodes replies or not."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


@dataclass
class Job:
    """A job as corral_job reports it (docs/protocol.md, "Reading a job").

    The fields the protocol documents are attributes; `record` holds the
    whole object, fields added by later versions included. Times are Unix
    milliseconds from the Redis server's clock."""

    id: int
    queue: str
    state: str
    priority: Optional[str] = None
    attempts: int = 0
    max_attempts: int = 0
    service: Optional[str] = None
    payload: Optional[str] = None
    #: The handler's output (done jobs): text, usually JSON (result_json()).
    result: Optional[str] = None
    #: The last error: why a dead job died, or a retried job's last failure.
    error: Optional[str] = None
    #: Token usage as the worker recorded it, when it does (issue 13).
    usage: Optional[Dict[str, Any]] = None
    created_ms: Optional[int] = None
    run_at_ms: Optional[int] = None
    queued_ms: Optional[int] = None
    started_ms: Optional[int] = None
    finished_ms: Optional[int] = None
    timeout_ms: Optional[int] = None
    worker: Optional[str] = None
    deferrals: int = 0
    unique_key: Optional[str] = None
    tenant: Optional[str] = None
    record: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ended(self) -> bool:
        """True once the job is done, dead or cancelled."""
        return self.state in FINAL_STATES

    @property
    def timings(self) -> Dict[str, int]:
        """The job's times that are set, plus wait_ms (enqueue to the last
        start) and run_ms (the last start to the end) when both ends are
        known."""
        t = {k: getattr(self, k) for k in ("created_ms", "run_at_ms", "queued_ms", "started_ms",
                                             "finished_ms") if getattr(self, k) is not None}
        if self.created_ms is not None and self.started_ms is not None:
            t["wait_ms"] = self.started_ms - self.created_ms
        if self.started_ms is not None and self.finished_ms is not None:
            t["run_ms"] = self.finished_ms - self.started_ms
        return t

    def result_json(self) -> Any:
        """The result parsed as JSON (None when there is no result)."""
        return None if self.result is None else json.loads(self.result)

    @classmethod
    def from_reply(cls, reply: Any) -> Optional["Job"]:
        """The Job of a corral_job reply, or None for nil (no such job)."""
        if reply is None:
            return None
        rec = json.loads(reply)
        usage = rec.get("usage")
        if isinstance(usage, str):
            try:
                usage = json.loads(usage)
            except ValueError:
                usage = {"text": usage}
        ints = ("attempts", "max_attempts", "deferrals")
        return cls(id=int(rec["id"]), queue=rec.get("queue", ""), state=rec.get("state", ""),
                   usage=usage, record=rec,
                   **{k: rec[k] for k in ("priority", "service", "payload", "result", "error",
                                          "created_ms", "run_at_ms", "queued_ms", "started_ms",
                                          "finished_ms", "timeout_ms", "worker", "unique_key",
                                          "tenant")
                      if k in rec},
                   **{k: int(rec[k]) for k in ints if k in rec})

