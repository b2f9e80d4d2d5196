'use strict';
// Errors of the corral client: one class per code word of the Function
// library's error replies (docs/protocol.md), all under CorralError. An
// error reply begins with a code word ("NOQUEUE unknown queue ..."); the
// table CODE_CLASSES maps each word to its class, and a word this client
// does not know (Redis's generic ERR among them) gives ServerError. The
// client throws the same classes for what it refuses before sending, with
// the server's message for the same input.

/** Base of every error the client throws for corral: .code is the code
 * word, .message the text after it (for people: match on the class or the
 * code, never on the text). */
class CorralError extends Error {
  constructor(message, code) {
    super(message);
    this.name = this.constructor.name;
    this.code = code || this.constructor.code || 'ERR';
    // enqueueMany only: ids of earlier batches' jobs, and the index of the
    // refused batch's first payload (each batch of 1,000 is all or nothing).
    this.enqueued = [];
    this.batchStart = 0;
  }

  toString() {
    return `${this.code} ${this.message}`;
  }
}

/** An error reply whose code word this client does not know: Redis's own
 * (ERR, NOPERM, OOM, READONLY, ...) or one newer than the client. */
class ServerError extends CorralError {}

function word(name, code, doc, Base = CorralError) {
  const cls = { [name]: class extends Base {} }[name];
  cls.code = code;
  cls.doc = doc;
  return cls;
}

const InvalidArgumentError = word('InvalidArgumentError', 'BADARG',
  "A call's arguments are malformed (a caller's bug), e.g. more than 1,000 payloads in one call.");
const InvalidQueueNameError = word('InvalidQueueNameError', 'BADNAME',
  'A queue or service name or key prefix that is not 1-64 characters of A-Z a-z 0-9 _ . : -');
const UnknownQueueError = word('UnknownQueueError', 'NOQUEUE',
  'The queue was never declared by corrald or corralctl.');
const UnknownServiceError = word('UnknownServiceError', 'NOSERVICE',
  'The service was never declared.');
const InvalidPayloadError = word('InvalidPayloadError', 'BADPAYLOAD',
  'A payload that is missing, not JSON, or (client side) not JSON-serialisable.');
const PayloadTooLargeError = word('PayloadTooLargeError', 'TOOBIG',
  "A payload over the queue's max_payload.");
const InvalidOptionError = word('InvalidOptionError', 'BADOPTION',
  'Options that are not an object, an unknown option, or a bad value.');
/** BADTENANT: an InvalidOptionError too. */
const InvalidTenantError = word('InvalidTenantError', 'BADTENANT',
  'The option tenant is not 1-64 bytes of A-Z a-z 0-9 _ . : @ -', InvalidOptionError);
const InvalidTokensError = word('InvalidTokensError', 'BADTOKENS',
  'The enqueue option tokens is not a whole number from 1 to 10^9.', InvalidOptionError);
const InvalidSettingError = word('InvalidSettingError', 'BADSETTING',
  'Queue or service settings that are not an object, unknown, out of range or contradictory.');
const NoSuchJobError = word('NoSuchJobError', 'NOJOB',
  'No job of that id: never enqueued, or its record expired.');
/** The job is in a state that does not allow the call: the base of
 * JobRunningError, JobFinishedError and JobNotDeadError. */
class JobStateError extends CorralError {}
const JobRunningError = word('JobRunningError', 'RUNNING',
  'The job is running: it cannot be cancelled.', JobStateError);
const JobFinishedError = word('JobFinishedError', 'FINISHED',
  'The job already ended (done or cancelled).', JobStateError);
const JobNotDeadError = word('JobNotDeadError', 'NOTDEAD',
  'The job is not dead, so it cannot be retried.', JobStateError);
const InvalidDeadlineError = word('InvalidDeadlineError', 'BADDEADLINE',
  'The option deadline_ms is not a positive integer of milliseconds.', InvalidOptionError);
const WaitTimeoutError = word('WaitTimeoutError', 'TIMEOUT',
  'wait() ran out of time before the job ended (thrown by the client).');

// The one table from code word to class: the library's words
// (docs/protocol.md "Error replies", queue/codes.c). Redis's own words (ERR,
// NOPERM, OOM, ...) and any word newer than this client throw ServerError
// with their code.
const CODE_CLASSES = Object.freeze({
  BADARG: InvalidArgumentError,
  BADNAME: InvalidQueueNameError,
  NOQUEUE: UnknownQueueError,
  NOSERVICE: UnknownServiceError,
  BADPAYLOAD: InvalidPayloadError,
  TOOBIG: PayloadTooLargeError,
  BADOPTION: InvalidOptionError,
  BADSETTING: InvalidSettingError,
  NOJOB: NoSuchJobError,
  RUNNING: JobRunningError,
  FINISHED: JobFinishedError,
  NOTDEAD: JobNotDeadError,
  BADTENANT: InvalidTenantError,
  BADTOKENS: InvalidTokensError,
  BADDEADLINE: InvalidDeadlineError,
});

const WORD = /^([A-Z][A-Z0-9_]+)(?: ([\s\S]*))?$/;

/** The CorralError for an error reply's text ("NOQUEUE unknown queue ..."). */
function errorFromReply(text) {
  const m = WORD.exec(text);
  if (m === null) return new ServerError(text, 'ERR');
  const Cls = Object.prototype.hasOwnProperty.call(CODE_CLASSES, m[1])
    ? CODE_CLASSES[m[1]] : ServerError;
  return new Cls(m[2] || '', m[1]);
}

module.exports = {
  CorralError,
  ServerError,
  InvalidArgumentError,
  InvalidQueueNameError,
  UnknownQueueError,
  UnknownServiceError,
  InvalidPayloadError,
  PayloadTooLargeError,
  InvalidOptionError,
  InvalidTenantError,
  InvalidTokensError,
  InvalidSettingError,
  NoSuchJobError,
  JobStateError,
  JobRunningError,
  JobFinishedError,
  JobNotDeadError,
  InvalidDeadlineError,
  WaitTimeoutError,
  CODE_CLASSES,
  errorFromReply,
};
