"""AsyncClient: the corral client on redis.asyncio, with the same calls,
checks and errors as Client (client.py)."""
from __future__ import annotations

import time
from typing import Any, AsyncIterator, Iterable, List, Optional, Union

import redis.asyncio as aredis
import redis.exceptions as rx

from . import _protocol as p
from ._protocol import Job, JobId
from .errors import CorralError, error_from_reply


class AsyncClient:
    """The asyncio form of Client: the same arguments (url, or a
    redis.asyncio.Redis of your own; prefix), the same methods as
    coroutines, the same errors. `async with AsyncClient(url) as c:`
    closes the connection it opened."""

    def __init__(self, url: Union[str, "aredis.Redis[Any]"], prefix: str = "corral",
                 **redis_kwargs: Any) -> None:
        self.prefix = p.check_prefix(prefix)
        if isinstance(url, str):
            self.redis = aredis.Redis.from_url(url, decode_responses=True, **redis_kwargs)
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

    async def _call(self, *args: Any) -> Any:
        try:
            return await self.redis.execute_command(*args)
        except rx.ResponseError as e:
            raise error_from_reply(e) from None

    async def enqueue(self, queue: str, payload: Any, **options: Any) -> int:
        """Client.enqueue: pushes one job, returns its id."""
        k = self._key(queue)
        data = p.payload_bytes(queue, payload)
        if options:
            return int(await self._call("FCALL", "corral_enqueue", 1, k, data,
                                        p.options_bytes(queue, options)))
        return int(await self._call("FCALL", "corral_enqueue", 1, k, data))

    async def enqueue_many(self, queue: str, payloads: Iterable[Any],
                           **options: Any) -> List[int]:
        """Client.enqueue_many: pushes many jobs in batches of 1,000,
        returns their ids in order."""
        k = self._key(queue)
        opts, groups = p.batches(queue, payloads, options)
        ids: List[int] = []
        for g in groups:
            try:
                reply = await self._call("FCALL", "corral_enqueue_many", 1, k, opts or b"{}", *g)
            except CorralError as e:
                e.enqueued, e.batch_start = ids, len(ids)
                raise
            ids.extend(int(x) for x in reply)
        return ids

    async def job(self, queue: str, job_id: JobId) -> Optional[Job]:
        """Client.job: the job as it is now, or None."""
        return Job.from_reply(await self._call("FCALL_RO", "corral_job", 1, self._key(queue),
                                               p.job_id_text(job_id)))

    async def wait(self, queue: str, job_id: JobId, timeout: Optional[float] = None) -> Job:
        """Client.wait: the job once it has ended; WaitTimeoutError after
        timeout seconds (None: no limit)."""
        k = self._key(queue)
        jid = p.job_id_text(job_id)
        t = p.timeout_arg(timeout)
        job = Job.from_reply(await self._call("FCALL_RO", "corral_job", 1, k, jid))
        if job is None:
            raise p.no_job(queue, jid)
        if job.ended:
            return job
        fin = f"{k}:fin:{jid}"
        if await self._call("BLMOVE", fin, fin, "RIGHT", "RIGHT", t) is None:
            raise p.wait_timeout(queue, jid, timeout)
        job = Job.from_reply(await self._call("FCALL_RO", "corral_job", 1, k, jid))
        if job is None:
            raise p.no_job(queue, jid)
        return job

    async def follow(self, queue: str, job_id: JobId, timeout: Optional[float] = None
                     ) -> AsyncIterator[p.Piece]:
        """Client.follow as an async iterator (`async for piece in
        c.follow(queue, id)`): a streamed answer's text piece by piece,
        until the answer is complete or the job was cancelled; nothing for
        an answer that was not streamed; a failed run followed on into the
        job's retry. WaitTimeoutError after timeout seconds (None: no
        limit), NoSuchJobError when there is no such job."""
        k = self._key(queue)
        jid = p.job_id_text(job_id)
        p.timeout_arg(timeout)
        sk, last = f"{k}:stream:{jid}", "0"
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            job = Job.from_reply(await self._call("FCALL_RO", "corral_job", 1, k, jid))
            if job is None:
                raise p.no_job(queue, jid)
            block = p.follow_block_ms(end, time.monotonic())
            if not job.ended and block <= 0:
                raise p.wait_timeout(queue, jid, timeout)
            entries = p.stream_entries(
                await self._call(*p.follow_read_args(sk, last, job.ended, block)))
            for last, f in entries:
                if "text" in f:
                    yield p.piece(f)
                if f.get("end") in p.FOLLOW_LAST_ENDS:
                    return
            if job.ended and not entries:
                return

    async def cancel(self, queue: str, job_id: JobId) -> None:
        """Client.cancel: cancels a queued, scheduled, dead or running job."""
        await self._call("FCALL", "corral_cancel", 1, self._key(queue), p.job_id_text(job_id))

    async def close(self) -> None:
        """Closes the connection the client opened (not one it was given)."""
        if self._own:
            # redis-py 5 names it aclose(); 4.x (Debian 12) close().
            closer = getattr(self.redis, "aclose", None) or self.redis.close
            await closer()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
