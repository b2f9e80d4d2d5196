'use strict';
// The Node client's follow against a real redis-server, on streams written
// exactly as the worker writes them (docs/protocol.md, "Streamed answers":
// entries {run, text} and {run, end, error} on <prefix>:{<queue>}:stream:<id>),
// and a real corral-worker streaming from the AI-service stand-in
// (tests/aistub.py), as the Python tests (tests/integration/test_client_python.py) do.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const corral = require('..');
const { startStreamingWorker, useRedisAndClient, waitUntil } = require('./helpers');

const Q = 'prompts';
const K = 'corral:{prompts}';
let redis;
let client;

useRedisAndClient((r, c) => {
  redis = r;
  client = c;
});

function xadd(id, fields) {
  return redis.admin.xadd(`${K}:stream:${id}`, '*', ...Object.entries(fields).flat());
}

/** Follows the job in the background: {got, done (a promise of null or the error)}. */
function following(id, options) {
  const got = [];
  const done = (async () => {
    for await (const piece of client.follow(Q, id, options)) got.push(piece);
    return null;
  })().catch((e) => e);
  return { got, done };
}

async function blockedClients() {
  return Number(/blocked_clients:(\d+)/.exec(await redis.admin.info('clients'))[1]);
}

test('follow yields each piece as it is streamed and ends at the complete end', async () => {
  const id = await client.enqueue(Q, {});
  const f = following(id, { timeout: 20000 });
  await xadd(id, { run: '1', text: 'Hello' });
  await waitUntil(() => f.got.length === 1, 5000, 'the first piece');
  assert.deepEqual(f.got, ['Hello']); // before the rest was written
  await xadd(id, { run: '1', text: ', world' });
  await xadd(id, { run: '1', end: 'complete', error: '' });
  await xadd(id, { run: '1', text: 'not read: after the end' });
  assert.equal(await f.done, null);
  assert.deepEqual(f.got, ['Hello', ', world']);
});

test('follow yields the pieces of a real worker as the service streams them', async (t) => {
  await redis.fresh(null); // the worker declares the queue
  const stop = await startStreamingWorker(redis);
  if (stop === null) return t.skip('corral-worker not built, or no python3');
  try {
    const id = await client.enqueue(Q, { max_tokens: 6, stub: { sse: 'anthropic', chunks: 3, chunk_ms: 300 } });
    const got = [];
    for await (const piece of client.follow(Q, id, { timeout: 20000 })) got.push([Date.now(), piece]);
    assert.deepEqual(got.map(([, piece]) => piece), ['w0 w1 ', 'w2 w3 ', 'w4 w5']);
    // piece by piece: the first came about two paces before the last
    assert.ok(got[2][0] - got[0][0] >= 400, `pieces at ${got.map(([at]) => at - got[0][0])} ms`);
    const job = await client.wait(Q, id, { timeout: 10000 });
    assert.equal(job.state, 'done');
    assert.equal(JSON.parse(job.result).text, 'w0 w1 w2 w3 w4 w5');
  } finally {
    await stop();
  }
});

test('follow of an answer that was not streamed yields nothing and ends with the job', async () => {
  const id = await client.enqueue(Q, {});
  const f = following(id, { timeout: 20000 });
  await waitUntil(async () => (await blockedClients()) >= 1, 5000, 'the follower to block');
  await client.cancel(Q, id); // the job ends without a stream
  assert.equal(await f.done, null);
  assert.deepEqual(f.got, []);
});

test('follow goes on into the next run after a run that failed', async () => {
  const id = await client.enqueue(Q, {});
  await xadd(id, { run: '1', text: 'Hel' });
  await xadd(id, { run: '1', end: 'failed', error: 'event stream cut mid-event: ...' });
  const f = following(id, { timeout: 20000 });
  await waitUntil(async () => f.got.length === 1 && (await blockedClients()) >= 1, 5000,
    'the follower to read run 1 and block for more');
  await xadd(id, { run: '2', text: 'Hello' });
  await xadd(id, { run: '2', end: 'complete', error: '' });
  assert.equal(await f.done, null);
  assert.deepEqual(f.got, ['Hel', 'Hello']);
});

test('follow with runs yields each piece with the run it was streamed in', async () => {
  const id = await client.enqueue(Q, {});
  await xadd(id, { run: '1', text: 'Hel' });
  await xadd(id, { run: '1', end: 'failed', error: 'event stream cut mid-event: ...' });
  await xadd(id, { run: '2', text: 'Hello' });
  await xadd(id, { run: '2', end: 'complete', error: '' });
  const f = following(id, { timeout: 20000, runs: true });
  assert.equal(await f.done, null);
  assert.deepEqual(f.got, [{ run: 1, text: 'Hel' }, { run: 2, text: 'Hello' }]);
});

test('follow of a run that failed for good ends with the job', async () => {
  const id = await client.enqueue(Q, {});
  await xadd(id, { run: '1', text: 'Hel' });
  await xadd(id, { run: '1', end: 'failed', error: 'malformed event stream: ...' });
  const f = following(id, { timeout: 20000 });
  await waitUntil(async () => f.got.length === 1 && (await blockedClients()) >= 1, 5000,
    'the follower to read run 1');
  await client.cancel(Q, id); // ends the job (a dead one reads the same)
  assert.equal(await f.done, null);
  assert.deepEqual(f.got, ['Hel']);
});

test('follow ends at a cancelled end entry', async () => {
  const id = await client.enqueue(Q, {});
  await xadd(id, { run: '1', text: 'Hel' });
  await xadd(id, { run: '1', end: 'cancelled', error: '' });
  const f = following(id, { timeout: 20000 });
  assert.equal(await f.done, null); // the job itself is still queued
  assert.deepEqual(f.got, ['Hel']);
});

test('follows blocking reads use a connection of their own, not the clients', async () => {
  const id = await client.enqueue(Q, {});
  const f = following(id, { timeout: 20000 });
  await waitUntil(async () => (await blockedClients()) >= 1, 5000, 'the follower to block');
  const own = Number(await client.redis.call('CLIENT', 'ID'));
  const list = await redis.admin.call('CLIENT', 'LIST');
  const readers = [...list.matchAll(/^id=(\d+) .*cmd=xread/gm)].map((m) => Number(m[1]));
  assert.equal(readers.length, 1, list);
  assert.notEqual(readers[0], own);
  const t0 = Date.now();
  await client.job(Q, id); // not held up behind the blocked read
  assert.ok(Date.now() - t0 < 200, `job() took ${Date.now() - t0} ms`);
  await xadd(id, { run: '1', end: 'complete', error: '' });
  assert.equal(await f.done, null);
  await waitUntil(async () => !/cmd=xread/.test(await redis.admin.call('CLIENT', 'LIST')), 5000,
    'the reading connection to close');
});

test('a follow left by break closes its reading connection', async () => {
  const id = await client.enqueue(Q, {});
  await xadd(id, { run: '1', text: 'Hel' });
  for await (const piece of client.follow(Q, id, { timeout: 20000 })) {
    assert.equal(piece, 'Hel');
    // CLIENT LIST names each connection's last command: the reader's is xread
    assert.match(await redis.admin.call('CLIENT', 'LIST'), /cmd=xread/);
    break;
  }
  await waitUntil(async () => !/cmd=xread/.test(await redis.admin.call('CLIENT', 'LIST')), 5000,
    'the reading connection to close');
});

test('follow that runs out throws WaitTimeoutError after the timeout', async () => {
  const id = await client.enqueue(Q, {});
  await xadd(id, { run: '1', text: 'partial' });
  const t0 = Date.now();
  const f = following(id, { timeout: 300 });
  const e = await f.done;
  const took = Date.now() - t0;
  assert.ok(e instanceof corral.WaitTimeoutError, String(e));
  assert.ok(took >= 295 && took < 2000, `took ${took} ms`);
  assert.deepEqual([e.code, e.message], ['TIMEOUT', `queue "prompts": job ${id} did not end within 300 ms`]);
  assert.deepEqual(f.got, ['partial']);
  const connected = async () => Number(/connected_clients:(\d+)/.exec(await redis.admin.info('clients'))[1]);
  await waitUntil(async () => (await connected()) === 2, 5000, 'its reading connection to close');
});

test('follow of an unknown job throws NoSuchJobError, and a bad timeout is refused', async () => {
  const e = await following(99, { timeout: 30000 }).done;
  assert.ok(e instanceof corral.NoSuchJobError, String(e));
  assert.match(e.message, /no job 99/);
  for (const bad of [0, -1, NaN, Infinity, '5', true]) {
    assert.ok((await following(1, { timeout: bad }).done) instanceof RangeError);
  }
  assert.ok((await following(1, undefined).done) instanceof corral.NoSuchJobError);
  const q = await following(1, {}).done;
  assert.ok(q instanceof corral.NoSuchJobError);
  const badName = await (async () => {
    try {
      for await (const _ of client.follow('bad name', 1)) void _;
    } catch (err) {
      return err;
    }
    return null;
  })();
  assert.ok(badName instanceof corral.InvalidQueueNameError, String(badName));
});
