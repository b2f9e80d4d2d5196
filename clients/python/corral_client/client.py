"""Client: the blocking corral client on redis-py. Every call is one of the
FCALLs of docs/protocol.md (wait adds the documented BLMOVE)."""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator, List, Optional, Union

import redis
import redis.exceptions as rx

from . import _protocol as p
from .errors import CorralError, error_from_reply
from ._protocol import Job, JobId


class Client:
    """A corral client for application services.

    url: a Redis URL ("redis://user@host:6379/0", "rediss://…",
    "unix:///run/redis/redis.sock"), passed to redis.Redis.from_url with
    any keyword arguments (password=…); or a redis.Redis of your own, which
    the client then uses and never closes. prefix: the key prefix of
    corral.conf's [redis] section.

    Every method raises a CorralError subclass for an error reply of the
    Function library (errors.CODE_CLASSES), and the same classes, with the
    library's message, for what it can refuse before sending; connection
    problems raise redis-py's own ConnectionError / TimeoutError. A
    connection made with socket_timeout cuts wait() short at that time."""

    def __init__(self, url: Union[str, "redis.Redis[Any]"], prefix: str = "corral",
                 **redis_kwargs: Any) -> None:
        self.prefix = p.check_prefix(prefix)
        if isinstance(url, str):
            self.redis = redis.Redis.from_url(url, decode_responses=True, **redis_kwargs)
            self._own = True
        else:
            self.redis = url
            self._own = False
        self._keys: dict = {}

    def _key(self, queue: str) -> str:
        k = self._keys.get(queue)
        if k is None:
            k = p.queue_key(self.prefix, queue)
            if len(self._keys) < 10000:
                self._keys[queue] = k
        return k

    def _call(self, *args: Any) -> Any:
        try:
            return self.redis.execute_command(*args)
        except rx.ResponseError as e:
            raise error_from_reply(e) from None

    def enqueue(self, queue: str, payload: Any, **options: Any) -> int:
        """Pushes one job; returns its id (corral_enqueue).

        payload: any JSON-serialisable value, sent as JSON text.
        options: priority (name or level index), delay_ms, max_attempts,
        timeout_ms, service, unique_key (docs/protocol.md, "Enqueue"). With
        unique_key, the id of the job that holds the key is returned while
        it exists."""
        k = self._key(queue)
        data = p.payload_bytes(queue, payload)
        if options:
            return int(self._call("FCALL", "corral_enqueue", 1, k, data,
                                  p.options_bytes(queue, options)))
        return int(self._call("FCALL", "corral_enqueue", 1, k, data))

    def enqueue_many(self, queue: str, payloads: Iterable[Any], **options: Any) -> List[int]:
        """Pushes many jobs with the same options; returns their ids in the
        order of the payloads (corral_enqueue_many, in batches of 1,000).

        Every payload is written as JSON before anything is sent, so one
        that cannot be refuses the whole list. Each batch is all or nothing
        on the server; when a batch after the first is refused, the error
        carries in .enqueued the ids of the earlier batches' jobs and in
        .batch_start the index of the refused batch's first payload."""
        k = self._key(queue)
        opts, groups = p.batches(queue, payloads, options)
        ids: List[int] = []
        for g in groups:
            try:
                reply = self._call("FCALL", "corral_enqueue_many", 1, k, opts or b"{}", *g)
            except CorralError as e:
                e.enqueued, e.batch_start = ids, len(ids)
                raise
            ids.extend(int(x) for x in reply)
        return ids

    def job(self, queue: str, job_id: JobId) -> Optional[Job]:
        """The job as it is now, or None when there is no such job (never
        enqueued, or its record expired after the queue's result_ttl)."""
        return Job.from_reply(self._call("FCALL_RO", "corral_job", 1, self._key(queue),
                                         p.job_id_text(job_id)))

    def wait(self, queue: str, job_id: JobId, timeout: Optional[float] = None) -> Job:
        """Blocks until the job ends (done, dead or cancelled) and returns
        it; at once when it has already ended.

        timeout: seconds (None: no limit). Raises WaitTimeoutError when it
        runs out, NoSuchJobError when there is no such job."""
        k = self._key(queue)
        jid = p.job_id_text(job_id)
        t = p.timeout_arg(timeout)
        job = Job.from_reply(self._call("FCALL_RO", "corral_job", 1, k, jid))
        if job is None:
            raise p.no_job(queue, jid)
        if job.ended:
            return job
        fin = f"{k}:fin:{jid}"
        # BLMOVE from the list to itself reads the final state and leaves
        # it for every other waiter (docs/protocol.md, "Awaiting the outcome").
        if self._call("BLMOVE", fin, fin, "RIGHT", "RIGHT", t) is None:
            raise p.wait_timeout(queue, jid, timeout)
        job = Job.from_reply(self._call("FCALL_RO", "corral_job", 1, k, jid))
        if job is None:
            raise p.no_job(queue, jid)
        return job

    def follow(self, queue: str, job_id: JobId, timeout: Optional[float] = None
               ) -> Iterator[p.Piece]:
        """Yields a streamed answer's text piece by piece as the worker
        reads it (XREAD BLOCK on the job's stream, docs/protocol.md,
        "Streamed answers"), until the answer is complete or the job was
        cancelled; then wait() gives the job. An answer that was not
        streamed yields nothing and ends when the job does (its result
        holds it whole). A run that failed ("end" failed) is followed on:
        when the job is retried its answer streams again from the start
        under the next run number, and those pieces are yielded too
        (each piece is a str with .run, its run number, to tell a new
        start); when it is not, the iterator ends with the job.

        timeout: seconds (None: no limit); WaitTimeoutError when it runs
        out before the end, NoSuchJobError when there is no such job."""
        k = self._key(queue)
        jid = p.job_id_text(job_id)
        p.timeout_arg(timeout)
        sk, last = f"{k}:stream:{jid}", "0"
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            job = Job.from_reply(self._call("FCALL_RO", "corral_job", 1, k, jid))
            if job is None:
                raise p.no_job(queue, jid)
            block = p.follow_block_ms(end, time.monotonic())
            if not job.ended and block <= 0:
                raise p.wait_timeout(queue, jid, timeout)
            entries = p.stream_entries(self._call(*p.follow_read_args(sk, last, job.ended, block)))
            for last, f in entries:
                if "text" in f:
                    yield p.piece(f)
                if f.get("end") in p.FOLLOW_LAST_ENDS:
                    return
            if job.ended and not entries:
                return

    def cancel(self, queue: str, job_id: JobId) -> None:
        """Cancels a job that is queued, scheduled, dead or running
        (corral_cancel; a running job's call is stopped, library version
        6); JobStateError for one that has ended, NoSuchJobError for an
        unknown id."""
        self._call("FCALL", "corral_cancel", 1, self._key(queue), p.job_id_text(job_id))

    def close(self) -> None:
        """Closes the connection the client opened (not one it was given)."""
        if self._own:
            self.redis.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
