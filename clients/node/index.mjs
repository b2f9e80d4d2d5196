// ESM entry of corral-client: the CommonJS module's exports, by name.
import cjs from './index.js';

export const {
  Client, MAX_BATCH, FINAL_STATES, CODE_CLASSES, errorFromReply, CorralError, ServerError,
  InvalidArgumentError, InvalidQueueNameError, UnknownQueueError, UnknownServiceError,
  InvalidPayloadError, PayloadTooLargeError, InvalidOptionError, InvalidSettingError,
  NoSuchJobError, JobStateError, JobRunningError, JobFinishedError, JobNotDeadError,
  InvalidDeadlineError, WaitTimeoutError, InvalidTenantError, InvalidTokensError,
} = cjs;
export default cjs;
