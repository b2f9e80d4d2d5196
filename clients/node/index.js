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
