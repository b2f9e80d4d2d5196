'use strict';
// The Node client against a real redis-server (and corrald with the echo
// handler where a job must end): every call, enqueueMany's batches and
// errors, wait's timeout, a connection of one's own, the example.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');
const Redis = require('ioredis');
const corral = require('..');
const { REPO, startCorrald, useRedisAndClient } = require('./helpers');

const Q = 'prompts';
let redis;
let client;

useRedisAndClient((r, c) => {
  redis = r;
  client = c;
});

async function rejects(promise, Cls) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof Cls, `${e.name}: ${e.message} is not a ${Cls.name}`);
    assert.ok(e instanceof corral.CorralError);
    return e;
  }
  throw new assert.AssertionError({ message: `no ${Cls.name} thrown` });
}

test('enqueue resolves to the new job id as a number and stores the payload as JSON', async () => {
  const id = await client.enqueue(Q, { messages: [{ role: 'user', content: 'héllo' }] });
  assert.equal(id, 1);
  assert.equal(await client.enqueue(Q, [1, 2]), 2);
  const job = await client.job(Q, id);
  assert.deepEqual(JSON.parse(job.payload), { messages: [{ role: 'user', content: 'héllo' }] });
  assert.deepEqual([job.id, job.queue, job.state, job.priority, job.ended], [1, Q, 'queued', 'normal', false]);
});

test('enqueue sends its options as corral_enqueue options', async () => {
  const id = await client.enqueue(Q, {}, { priority: 'high', max_attempts: 2, timeout_ms: 1500, service: 'svc' });
  const job = await client.job(Q, id);
  assert.deepEqual([job.priority, job.max_attempts, job.timeout_ms, job.service], ['high', 2, 1500, 'svc']);
  assert.equal((await client.job(Q, await client.enqueue(Q, {}, { priority: 2 }))).priority, 'low');
  assert.equal((await client.job(Q, await client.enqueue(Q, {}, { delay_ms: 60000 }))).state, 'scheduled');
});

test('enqueue with a unique key resolves to the job that holds it', async () => {
  const first = await client.enqueue(Q, { n: 1 }, { unique_key: 'order-42' });
  assert.equal(await client.enqueue(Q, { n: 2 }, { unique_key: 'order-42' }), first);
});

test('enqueueMany resolves to ids in order with the options applied to each', async () => {
  const ids = await client.enqueueMany(Q, Array.from({ length: 10 }, (_, i) => ({ n: i })), { priority: 'high' });
  assert.deepEqual(ids, Array.from({ length: 10 }, (_, i) => i + 1));
  for (const [i, id] of ids.entries()) {
    const job = await client.job(Q, id);
    assert.deepEqual(JSON.parse(job.payload), { n: i });
    assert.equal(job.priority, 'high');
  }
});

test('enqueueMany sends batches of 1000', async () => {
  const ids = await client.enqueueMany(Q, Array.from({ length: 2500 }, (_, i) => i));
  assert.equal(ids.length, 2500);
  assert.equal(ids[2499], 2500);
  assert.equal(await redis.fcalls(), 3);
  assert.equal(JSON.parse((await client.job(Q, 2500)).payload), 2499);
});

test('enqueueMany of an empty list sends nothing', async () => {
  assert.deepEqual(await client.enqueueMany(Q, []), []);
  assert.equal(await redis.fcalls(), 0);
});

test('enqueueMany refused by the server writes nothing and names the position', async () => {
  const e = await rejects(client.enqueueMany(Q, [1, 'x'.repeat(2000), 3]), corral.PayloadTooLargeError);
  assert.equal(e.code, 'TOOBIG');
  assert.equal(e.message, 'queue "prompts": payload 2 of 3 is 2002 bytes, limit is 1000 (max_payload)');
  assert.deepEqual([e.enqueued, e.batchStart], [[], 0]);
  assert.equal(await redis.admin.get('corral:{prompts}:seq'), null);
});

test('enqueueMany refused in a later batch reports the earlier batches jobs', async () => {
  const payloads = new Array(1500).fill(1);
  payloads[1200] = 'x'.repeat(2000);
  const e = await rejects(client.enqueueMany(Q, payloads), corral.PayloadTooLargeError);
  assert.equal(e.message, 'queue "prompts": payload 201 of 500 is 2002 bytes, limit is 1000 (max_payload)');
  assert.equal(e.enqueued.length, 1000);
  assert.equal(e.enqueued[999], 1000);
  assert.equal(e.batchStart, 1000);
  assert.equal(await redis.admin.get('corral:{prompts}:seq'), '1000');
});

test('enqueueMany with a payload that is not serialisable sends nothing', async () => {
  const payloads = new Array(1500).fill(1);
  payloads.push({ n: 1n });
  const e = await rejects(client.enqueueMany(Q, payloads), corral.InvalidPayloadError);
  assert.match(e.message, /^queue "prompts": payload 1501 of 1501 is not JSON-serialisable \(.*BigInt/);
  assert.equal(await redis.fcalls(), 0);
});

test('job of an unknown id is null', async () => {
  assert.equal(await client.job(Q, 99), null);
  assert.equal(await client.job(Q, '99'), null);
});

test('cancel ends a queued job cancelled', async () => {
  const id = await client.enqueue(Q, {});
  assert.equal(await client.cancel(Q, id), undefined);
  assert.equal((await client.job(Q, id)).state, 'cancelled');
});

test('cancel of an unknown or ended job rejects with the servers error', async () => {
  const id = await client.enqueue(Q, {});
  await client.cancel(Q, id);
  let e = await rejects(client.cancel(Q, id), corral.JobFinishedError);
  assert.ok(e instanceof corral.JobStateError);
  assert.equal(e.code, 'FINISHED');
  assert.equal(e.message, `queue "prompts": job ${id} is cancelled and cannot be cancelled`);
  e = await rejects(client.cancel(Q, 99), corral.NoSuchJobError);
  assert.equal(e.code, 'NOJOB');
  assert.equal(e.message, 'queue "prompts": no job 99');
});

test('wait resolves to the done job with its result and timings', async (t) => {
  const stop = await startCorrald(redis);
  if (stop === null) return t.skip('corrald not built (make)');
  try {
    const id = await client.enqueue(Q, { prompt: 'hi' });
    const job = await client.wait(Q, id, { timeout: 15000 });
    assert.equal(job.state, 'done');
    assert.ok(job.ended);
    assert.deepEqual(JSON.parse(job.result), { prompt: 'hi' });
    assert.equal(job.error, null);
    assert.equal(job.usage, null);
    const tm = job.timings;
    assert.ok(tm.created_ms <= tm.started_ms && tm.started_ms <= tm.finished_ms);
    assert.ok(tm.wait_ms >= 0 && tm.run_ms >= 0);
  } finally {
    await stop();
  }
});

test('wait on a job that already ended resolves at once', async () => {
  const id = await client.enqueue(Q, {});
  await client.cancel(Q, id);
  const t0 = Date.now();
  assert.equal((await client.wait(Q, id, { timeout: 30000 })).state, 'cancelled');
  assert.ok(Date.now() - t0 < 1000);
});

test('wait that runs out rejects with WaitTimeoutError after the timeout', async () => {
  const id = await client.enqueue(Q, {}); // no worker: it never ends
  const t0 = Date.now();
  const e = await rejects(client.wait(Q, id, { timeout: 300 }), corral.WaitTimeoutError);
  const took = Date.now() - t0;
  assert.ok(took >= 295 && took < 2000, `took ${took} ms`);
  assert.deepEqual([e.code, e.message], ['TIMEOUT', `queue "prompts": job ${id} did not end within 300 ms`]);
});

test('wait on an unknown job rejects with NoSuchJobError at once', async () => {
  const t0 = Date.now();
  const e = await rejects(client.wait(Q, 99, { timeout: 30000 }), corral.NoSuchJobError);
  assert.match(e.message, /no job 99/);
  assert.ok(Date.now() - t0 < 1000);
});

test('wait with a bad timeout is refused', async () => {
  for (const bad of [0, -1, NaN, Infinity, '5', true]) {
    await assert.rejects(client.wait(Q, 1, { timeout: bad }), RangeError);
  }
});

test('a client with another prefix uses that prefix keys', async () => {
  await redis.admin.call('FCALL', 'corral_declare', 1, 'myapp:{jobs}', '{}');
  const c = new corral.Client(redis.url, { prefix: 'myapp' });
  try {
    const id = await c.enqueue('jobs', {});
    assert.equal(await redis.admin.exists(`myapp:{jobs}:job:${id}`), 1);
  } finally {
    await c.close();
  }
  assert.throws(() => new corral.Client(redis.url, { prefix: 'my app' }),
    (e) => e instanceof corral.InvalidQueueNameError && e.message === 'bad key prefix "my app"');
});

test('a client on an ioredis connection of its own uses it and leaves it open', async () => {
  const own = new Redis({ path: redis.socket });
  const c = new corral.Client(own);
  const id = await c.enqueue(Q, { a: 1 });
  await c.cancel(Q, id);
  assert.equal((await c.wait(Q, id)).state, 'cancelled');
  await c.close();
  assert.equal(await own.ping(), 'PONG');
  own.disconnect();
});

test('a client made from ioredis options connects with them', async () => {
  const c = new corral.Client({ path: redis.socket });
  try {
    assert.equal(await c.enqueue(Q, {}), 1);
  } finally {
    await c.close();
  }
});

test('the node example enqueues, waits and prints the result', async (t) => {
  const stop = await startCorrald(redis);
  if (stop === null) return t.skip('corrald not built (make)');
  try {
    const { stdout, stderr } = await new Promise((resolve, reject) => {
      execFile(process.execPath, [path.join(REPO, 'examples', 'enqueue_wait.js'), redis.url, Q,
        '{"prompt": "hi"}', '15'], { timeout: 30000 }, (err, out, errOut) => (err
        ? reject(new Error(`${err.message}\n${errOut}`)) : resolve({ stdout: out, stderr: errOut })));
    });
    assert.deepEqual(JSON.parse(stdout), { prompt: 'hi' });
    assert.match(stderr, /^job 1\n/);
  } finally {
    await stop();
  }
});
