'use strict';
// corral-client: enqueue jobs on corral queues and await them, from Node.js,
// on ioredis. Every call is one of the FCALLs of docs/protocol.md (wait adds
// the documented BLMOVE); errors are CorralError subclasses by code word.
const Redis = require('ioredis');
const errors = require('./errors');
const p = require('./protocol');

const { CorralError, errorFromReply } = errors;

function connect(urlOrOptions) {
  if (urlOrOptions === undefined) return [new Redis(), true];
  if (typeof urlOrOptions === 'string') {
    // ioredis takes a socket path, not a unix:// URL.
    if (urlOrOptions.startsWith('unix://')) {
      const u = new URL(urlOrOptions);
      const opts = { path: decodeURIComponent(u.pathname) };
      if (u.searchParams.get('db')) opts.db = Number(u.searchParams.get('db'));
      if (u.username) opts.username = decodeURIComponent(u.username);
      if (u.password) opts.password = decodeURIComponent(u.password);
      return [new Redis(opts), true];
    }
    return [new Redis(urlOrOptions), true];
  }
  if (urlOrOptions instanceof Redis) return [urlOrOptions, false];
  if (typeof urlOrOptions === 'object' && urlOrOptions !== null) {
    return [new Redis(urlOrOptions), true];
  }
  throw new TypeError('new Client(urlOrOptions): a Redis URL, ioredis options or an ioredis client');
}

/**
 * A corral client for application services.
 *
 * urlOrOptions: a Redis URL ("redis://user:pw@host:6379/0", "rediss://…",
 * "unix:///run/redis/redis.sock"), ioredis options, or an ioredis client of
 * your own (then used and never closed). options.prefix: the key prefix of
 * corral.conf's [redis] section (default "corral").
 */
class Client {
  constructor(urlOrOptions, options = {}) {
    this.prefix = p.checkPrefix(options.prefix === undefined ? 'corral' : options.prefix);
    [this.redis, this._own] = connect(urlOrOptions);
    this._keys = new Map();
  }

  _key(queue) {
    let k = this._keys.get(queue);
    if (k === undefined) {
      k = p.queueKey(this.prefix, queue);
      if (this._keys.size < 10000) this._keys.set(queue, k);
    }
    return k;
  }

  async _call(...args) {
    try {
      return await this.redis.call(...args);
    } catch (e) {
      if (e instanceof Redis.ReplyError) throw errorFromReply(e.message);
      throw e;
    }
  }

  /**
   * Pushes one job; resolves to its id (corral_enqueue). payload: any
   * JSON-serialisable value. options: priority, delay_ms, max_attempts,
   * timeout_ms, service, unique_key (docs/protocol.md, "Enqueue").
   */
  async enqueue(queue, payload, options) {
    const k = this._key(queue);
    const data = p.payloadText(queue, payload);
    if (options !== undefined && options !== null && Object.keys(options).length) {
      return Number(await this._call('FCALL', 'corral_enqueue', 1, k, data, p.optionsText(queue, options)));
    }
    if (options !== undefined && options !== null) p.optionsText(queue, options);
    return Number(await this._call('FCALL', 'corral_enqueue', 1, k, data));
  }

  /**
   * Pushes many jobs with the same options; resolves to their ids in the
   * order of the payloads (corral_enqueue_many, in batches of 1,000). Every
   * payload is written as JSON before anything is sent. Each batch is all or
   * nothing; when a batch after the first is refused, the error carries in
   * .enqueued the ids of the earlier batches' jobs and in .batchStart the
   * index of the refused batch's first payload.
   */
  async enqueueMany(queue, payloads, options) {
    const k = this._key(queue);
    const [opts, groups] = p.batches(queue, payloads, options);
    const ids = [];
    for (const g of groups) {
      let reply;
      try {
        reply = await this._call('FCALL', 'corral_enqueue_many', 1, k, opts, ...g);
      } catch (e) {
        if (e instanceof CorralError) {
          e.enqueued = ids;
          e.batchStart = ids.length;
        }
        throw e;
      }
      for (const id of reply) ids.push(Number(id));
    }
    return ids;
  }

  /** The job as it is now, or null when there is no such job. */
  async job(queue, id) {
    return p.jobFromReply(await this._call('FCALL_RO', 'corral_job', 1, this._key(queue), p.jobIdText(id)));
  }

  /**
   * Resolves to the job once it has ended (done, dead or cancelled); at once
   * when it already has. options.timeout: milliseconds (none: no limit);
   * rejects with WaitTimeoutError when it runs out, NoSuchJobError when
   * there is no such job.
   */
  async wait(queue, id, options = {}) {
    const k = this._key(queue);
    const jid = p.jobIdText(id);
    const t = p.timeoutArg(options.timeout);
    let job = p.jobFromReply(await this._call('FCALL_RO', 'corral_job', 1, k, jid));
    if (job === null) throw p.noJob(queue, jid);
    if (job.ended) return job;
    const fin = `${k}:fin:${jid}`;
    // BLMOVE from the list to itself reads the final state and leaves it for
    // every other waiter (docs/protocol.md, "Awaiting the outcome").
    if (await this._call('BLMOVE', fin, fin, 'RIGHT', 'RIGHT', t) === null) {
      throw p.waitTimeout(queue, jid, options.timeout);
    }
    job = p.jobFromReply(await this._call('FCALL_RO', 'corral_job', 1, k, jid));
    if (job === null) throw p.noJob(queue, jid);
    return job;
  }

  /**
   * An async iterator of a streamed answer's text, piece by piece as the
   * worker reads it (XREAD BLOCK on the job's stream, docs/protocol.md,
   * "Streamed answers"): `for await (const piece of client.follow(q, id))`.
   * It ends when the answer is complete or the job was cancelled (then
   * wait() gives the job). An answer that was not streamed yields nothing
   * and ends when the job does (its result holds it whole). A run that
   * failed is followed on: when the job is retried its answer streams again
   * from the start under the next run number, and those pieces come too
   * (with options.runs each piece is {run, text}, run the number of the run
   * it was streamed in, to tell a new start); when it is not, the iterator
   * ends with the job. options.timeout: milliseconds (none: no limit);
   * throws WaitTimeoutError when it runs out before the end, NoSuchJobError
   * when there is no such job. The blocking
   * reads use a connection of their own (duplicate()), closed at the end,
   * so the client's other calls do not wait behind them.
   */
  async* follow(queue, id, options = {}) {
    const k = this._key(queue);
    const jid = p.jobIdText(id);
    p.timeoutArg(options.timeout);
    const sk = `${k}:stream:${jid}`;
    const end = options.timeout === undefined || options.timeout === null ? null : Date.now() + options.timeout;
    let last = '0';
    let reader = null;
    try {
      for (;;) {
        const job = p.jobFromReply(await this._call('FCALL_RO', 'corral_job', 1, k, jid));
        if (job === null) throw p.noJob(queue, jid);
        const block = end === null ? p.FOLLOW_POLL_MS : Math.min(p.FOLLOW_POLL_MS, end - Date.now());
        if (!job.ended && block <= 0) throw p.waitTimeout(queue, jid, options.timeout);
        let reply;
        if (job.ended) {
          reply = await this._call('XREAD', 'COUNT', 1000, 'STREAMS', sk, last);
        } else {
          if (reader === null) reader = this.redis.duplicate();
          try {
            reply = await reader.call('XREAD', 'COUNT', 1000, 'BLOCK', Math.max(Math.floor(block), 1), 'STREAMS', sk, last);
          } catch (e) {
            if (e instanceof Redis.ReplyError) throw errorFromReply(e.message);
            throw e;
          }
        }
        const entries = p.streamEntries(reply);
        for (const [eid, f] of entries) {
          last = eid;
          if (f.text !== undefined) yield options.runs ? { run: Number(f.run) || 0, text: f.text } : f.text;
          if (p.FOLLOW_LAST_ENDS.has(f.end)) return;
        }
        if (job.ended && entries.length === 0) return;
      }
    } finally {
      if (reader !== null) reader.disconnect();
    }
  }

  /** Cancels a job that is queued, scheduled or dead (corral_cancel). */
  async cancel(queue, id) {
    await this._call('FCALL', 'corral_cancel', 1, this._key(queue), p.jobIdText(id));
  }

  /** Closes the connection the client opened (not one it was given). */
  async close() {
    if (this._own) await this.redis.quit();
  }
}

module.exports = {
  Client,
  MAX_BATCH: p.MAX_BATCH,
  FINAL_STATES: p.FINAL_STATES,
  ...errors,
};
