'use strict';
// What the client checks before a round trip, with the Function library's
// own messages (queue/corral.lua), and how replies are read. No I/O here.
const {
  InvalidOptionError, InvalidPayloadError, InvalidQueueNameError, InvalidTenantError,
  InvalidTokensError, NoSuchJobError, WaitTimeoutError,
} = require('./errors');

/** Most payloads corral_enqueue_many takes in one call. */
const MAX_BATCH = 1000;
/** States a job ends in. */
const FINAL_STATES = Object.freeze(['done', 'dead', 'cancelled']);
const OPTION_NAMES = ['priority', 'delay_ms', 'max_attempts', 'timeout_ms', 'service',
  'unique_key', 'tenant', 'tokens', 'deadline_ms'];
const KNOWN = OPTION_NAMES.join(', ');
// The integer options and their ranges, as corral_enqueue checks them.
const INT_RANGES = {
  delay_ms: [0, 366 * 86400000], max_attempts: [1, 1000], timeout_ms: [1, 86400000],
};
const NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
const TENANT = /^[A-Za-z0-9_.:@-]{1,64}$/;

// text cut to n bytes of UTF-8, as Lua's sub() cuts it and as the error
// reply holding it is decoded.
function cut(text, n) {
  return Buffer.from(text, 'utf8').subarray(0, n).toString('utf8');
}

// A number as Lua's tostring prints it (C's %.14g).
function luaNumber(v) {
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  if (v === 0) return '0';
  const strip = (s) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  if (Number.isInteger(v) && Math.abs(v) >= 1e14) return luaBigInteger(v, strip);
  const [mant, e] = v.toExponential(13).split('e');
  const exp = Number(e);
  if (exp < -4 || exp >= 14) {
    const a = Math.abs(exp);
    return `${strip(mant)}e${exp < 0 ? '-' : '+'}${a < 10 ? '0' : ''}${a}`;
  }
  return strip(v.toFixed(13 - exp));
}

// An integer of 15 digits or more in %.14g: C rounds the exact decimal
// value half to even, toExponential rounds ties up.
function luaBigInteger(v, strip) {
  const sign = v < 0 ? '-' : '';
  let digits = BigInt(Math.abs(v)).toString();
  let exp = digits.length - 1;
  const rest = digits.slice(14);
  let head = BigInt(digits.slice(0, 14));
  const half = '5'.padEnd(rest.length, '0');
  if (rest > half || (rest === half && head % 2n === 1n)) head += 1n;
  digits = head.toString();
  if (digits.length > 14) exp += 1;
  if (exp < 14) return sign + digits.padEnd(exp + 1, '0');
  const a = String(exp).padStart(2, '0');
  return `${sign}${strip(`${digits[0]}.${digits.slice(1)}`)}e+${a}`;
}

// A value as corral.lua's shown() writes it, or null where the client
// cannot know the exact text (a list or an object).
function shown(v) {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'number') return luaNumber(v);
  if (typeof v === 'string') return v;
  return null;
}

/** The one key of every call, "<prefix>:{<queue>}" (the prefixed form
 * matches ACL key patterns such as ~corral:*; docs/operations.md). */
function queueKey(prefix, queue) {
  if (typeof queue !== 'string') throw new TypeError(`queue must be a string, got ${typeof queue}`);
  if (!NAME.test(queue)) {
    throw new InvalidQueueNameError(
      `bad queue name "${cut(queue, 80)}": use 1-64 characters of A-Z a-z 0-9 _ . : -`);
  }
  return `${prefix}:{${queue}}`;
}

function checkPrefix(prefix) {
  if (typeof prefix !== 'string') throw new TypeError(`prefix must be a string, got ${typeof prefix}`);
  if (!NAME.test(prefix)) throw new InvalidQueueNameError(`bad key prefix "${cut(prefix, 80)}"`);
  return prefix;
}

/** A job id as sent: a number or its decimal text. */
function jobIdText(id) {
  if (typeof id === 'number' && Number.isSafeInteger(id)) return String(id);
  if (typeof id === 'string') return id;
  if (typeof id === 'bigint') return id.toString();
  throw new TypeError(`job id must be an integer or a string, got ${typeof id === 'number' ? id : typeof id}`);
}

// Strict JSON: NaN and Infinity (which JSON.stringify writes as null),
// functions and symbols are refused rather than lost; undefined in an
// object is left out, as JSON.stringify does.
function strictReplacer(key, value) {
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new TypeError(`${value} is not a JSON number`);
  }
  if (typeof value === 'function' || typeof value === 'symbol') {
    throw new TypeError(`a ${typeof value} is not a JSON value`);
  }
  return value;
}

function json(value) {
  const text = JSON.stringify(value, strictReplacer);
  if (text === undefined) throw new TypeError(`${value} is not a JSON value`);
  return text;
}

/** The payload as JSON text; InvalidPayloadError, before anything is sent,
 * when it cannot be written as JSON. */
function payloadText(queue, payload, where = 'payload') {
  try {
    return json(payload);
  } catch (e) {
    throw new InvalidPayloadError(`queue "${queue}": ${where} is not JSON-serialisable (${e.message})`);
  }
}

/** The options object as JSON text, after the checks the client can make
 * with the library's own message; the rest (priority names, which depend on
 * the queue's settings, and numbers written as text) is the library's. */
function optionsText(queue, options) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidOptionError(`queue "${queue}": options must be a JSON object`);
  }
  for (const [name, v] of Object.entries(options)) {
    if (!OPTION_NAMES.includes(name)) {
      throw new InvalidOptionError(`queue "${queue}": unknown option "${name}" (known: ${KNOWN})`);
    }
    if (v === undefined) continue; // left out of the JSON
    if (name in INT_RANGES) {
      const [lo, hi] = INT_RANGES[name];
      if (v === null || typeof v === 'boolean' ||
          (typeof v === 'number' && (!Number.isInteger(v) || v < lo || v > hi))) {
        throw new InvalidOptionError(
          `${name} must be an integer from ${lo} to ${hi}, got ${shown(v).slice(0, 40)}`);
      }
    } else if (name === 'service') {
      const s = shown(v);
      if (s !== null && !(typeof v === 'string' && NAME.test(v))) {
        throw new InvalidOptionError(`queue "${queue}": bad service name "${cut(s, 64)}"`);
      }
    } else if (name === 'tokens') { // a list or an object: the library's message
      if (shown(v) !== null &&
          (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 1000000000)) {
        throw new InvalidTokensError(`queue "${queue}": tokens must be a whole number from 1 to ` +
          `1000000000, got ${shown(v).slice(0, 40)}`);
      }
    } else if (name === 'unique_key') {
      const n = typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : 0;
      if (n < 1 || n > 256) {
        throw new InvalidOptionError(`queue "${queue}": unique_key must be a string of 1 to 256 bytes`);
      }
    } else if (name === 'tenant') {
      if (!(typeof v === 'string' && TENANT.test(v))) {
        throw new InvalidTenantError(`queue "${queue}": bad tenant "${cut(String(shown(v)), 80)}": ` +
          'use 1-64 bytes of A-Z a-z 0-9 _ . : @ -');
      }
    }
  }
  try {
    return json(options);
  } catch (e) {
    throw new InvalidOptionError(`queue "${queue}": options are not JSON-serialisable (${e.message})`);
  }
}

/** corral_enqueue_many's options argument and the payloads in batches of
 * MAX_BATCH, every payload written as JSON before anything is sent. */
function batches(queue, payloads, options) {
  if (payloads === null || typeof payloads !== 'object' || typeof payloads[Symbol.iterator] !== 'function') {
    throw new TypeError('payloads must be an array (or another iterable) of payloads');
  }
  const list = Array.from(payloads);
  const n = list.length;
  const data = list.map((p, i) => payloadText(queue, p, `payload ${i + 1} of ${n}`));
  const opts = options && Object.keys(options).length ? optionsText(queue, options) : '{}';
  const groups = [];
  for (let i = 0; i < n; i += MAX_BATCH) groups.push(data.slice(i, i + MAX_BATCH));
  return [opts, groups];
}

/** BLMOVE's timeout in seconds ("0" blocks for ever) from milliseconds. */
function timeoutArg(timeoutMs) {
  if (timeoutMs === undefined || timeoutMs === null) return '0';
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
    throw new RangeError(`timeout must be a number of milliseconds above 0, got ${String(timeoutMs)}`);
  }
  return (Math.max(timeoutMs, 1) / 1000).toFixed(3);
}

function noJob(queue, id) {
  return new NoSuchJobError(
    `queue "${queue}": no job ${id} (never enqueued, or its record expired after result_ttl)`);
}

function waitTimeout(queue, id, timeoutMs) {
  return new WaitTimeoutError(`queue "${queue}": job ${id} did not end within ${Math.round(timeoutMs)} ms`);
}

/** How long one XREAD of follow() blocks before it looks at the job again (ms). */
const FOLLOW_POLL_MS = 250;
/**
 * The end entries after which a run's stream has nothing more: the answer is
 * complete (the result follows) or the job was cancelled. After "failed" the
 * job may be retried and stream again under the next run number.
 */
const FOLLOW_LAST_ENDS = new Set(['complete', 'cancelled']);

/** The entries of an XREAD reply of one stream as [id, {field: value}]. */
function streamEntries(reply) {
  const out = [];
  for (const [, entries] of reply || []) {
    for (const [eid, fields] of entries) {
      const f = Object.create(null);
      for (let i = 0; i + 1 < fields.length; i += 2) f[String(fields[i])] = String(fields[i + 1]);
      out.push([String(eid), f]);
    }
  }
  return out;
}

const FIELDS = ['priority', 'attempts', 'max_attempts', 'service', 'payload', 'result', 'error',
  'usage', 'created_ms', 'run_at_ms', 'queued_ms', 'started_ms', 'finished_ms', 'timeout_ms',
  'worker', 'deferrals', 'unique_key'];
const TIMES = ['created_ms', 'run_at_ms', 'queued_ms', 'started_ms', 'finished_ms'];

/** The Job of a corral_job reply, or null for nil (no such job). */
function jobFromReply(reply) {
  if (reply === null || reply === undefined) return null;
  const record = JSON.parse(reply);
  const job = { id: Number(record.id), queue: record.queue, state: record.state };
  for (const f of FIELDS) job[f] = record[f] === undefined ? null : record[f];
  if (job.attempts === null) job.attempts = 0;
  if (job.deferrals === null) job.deferrals = 0;
  if (typeof job.usage === 'string') {
    try {
      job.usage = JSON.parse(job.usage);
    } catch (e) {
      job.usage = { text: job.usage };
    }
  }
  job.ended = FINAL_STATES.includes(job.state);
  const timings = {};
  for (const t of TIMES) if (job[t] !== null) timings[t] = job[t];
  if (job.created_ms !== null && job.started_ms !== null) timings.wait_ms = job.started_ms - job.created_ms;
  if (job.started_ms !== null && job.finished_ms !== null) timings.run_ms = job.finished_ms - job.started_ms;
  job.timings = timings;
  job.record = record;
  return job;
}

module.exports = {
  MAX_BATCH,
  FINAL_STATES,
  OPTION_NAMES,
  queueKey,
  checkPrefix,
  jobIdText,
  payloadText,
  optionsText,
  batches,
  timeoutArg,
  noJob,
  waitTimeout,
  jobFromReply,
  luaNumber,
  FOLLOW_POLL_MS,
  FOLLOW_LAST_ENDS,
  streamEntries,
};
