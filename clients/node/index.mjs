// ESM entry of corral-client: the CommonJS module's exports, by name.
import cjs from './index.js';

export const {
  Client, MAX_BATCH, FINAL_STATES, CODE_CLASSES, errorFromReply, CorralError, ServerError,
  UnknownQueueError, InvalidQueueNameError, InvalidPayloadError, PayloadTooLargeError,
  InvalidOptionError, NoSuchJobError, JobStateError, UnknownServiceError, WaitTimeoutError,
} = cjs;
export default cjs;
