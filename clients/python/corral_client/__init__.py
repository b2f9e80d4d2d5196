"""corral_client: enqueue jobs on corral queues and await them, from Python.

    from corral_client import Client
    with Client("redis://localhost:6379/0") as corral:
        job_id = corral.enqueue("prompts", {"messages": [...]}, priority="high")
        job = corral.wait("prompts", job_id, timeout=60)
        print(job.state, job.result)

Client is blocking (redis-py); AsyncClient is the same on redis.asyncio.
Errors are CorralError subclasses, one per code word of the Function
library (errors.CODE_CLASSES). The wire protocol is docs/protocol.md."""
from ._protocol import FINAL_STATES, MAX_BATCH, Job, Piece
from .aio import AsyncClient
from .client import Client
from .errors import (CODE_CLASSES, CorralError, InvalidArgumentError, InvalidDeadlineError,
                     InvalidOptionError,
                     InvalidPayloadError, InvalidQueueNameError, InvalidSettingError,
                     InvalidTokensError, JobFinishedError, JobNotDeadError, JobRunningError, JobStateError,
                     NoSuchJobError, PayloadTooLargeError, ServerError, UnknownQueueError,
                     UnknownServiceError, WaitTimeoutError, InvalidTenantError,
                     error_from_reply)

__version__ = "0.1.0"
__all__ = [
    "Client", "AsyncClient", "Job", "Piece", "FINAL_STATES", "MAX_BATCH", "CODE_CLASSES",
    "CorralError",
    "ServerError", "InvalidArgumentError", "InvalidQueueNameError", "UnknownQueueError",
    "UnknownServiceError", "InvalidPayloadError", "PayloadTooLargeError", "InvalidOptionError",
    "InvalidSettingError", "InvalidTokensError", "NoSuchJobError", "JobStateError", "JobRunningError",
    "JobFinishedError", "JobNotDeadError", "WaitTimeoutError", "InvalidTenantError",
    "InvalidDeadlineError", "error_from_reply",
]
