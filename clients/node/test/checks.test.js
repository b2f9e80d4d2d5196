'use strict';
// What the Node client refuses before sending (the server's own message for
// the same input, and no FCALL sent), and each code word's error class.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const corral = require('..');
const { useRedisAndClient } = require('./helpers');

const Q = 'prompts';
let redis;
let client;

useRedisAndClient((r, c) => {
  redis = r;
  client = c;
});

// The server's message for an input, without its code word.
async function serverSays(...args) {
  try {
    await redis.admin.call('FCALL', ...args);
  } catch (e) {
    return e.message.replace(/^[A-Z][A-Z0-9_]+ /, '');
  }
  throw new Error(`the server took ${JSON.stringify(args)}`);
}

const BAD_OPTIONS = [
  { prio: 1 },
  { delay_ms: -5 },
  { delay_ms: 31622400001 },
  { delay_ms: 2 ** 63 },
  { delay_ms: 123456789012345 },
  { delay_ms: 1.5 },
  { delay_ms: 0.00001 },
  { delay_ms: null },
  { delay_ms: true },
  { max_attempts: 0 },
  { max_attempts: 1001 },
  { max_attempts: 2.5 },
  { timeout_ms: 0 },
  { timeout_ms: 86400001 },
  { timeout_ms: false },
  { service: 'a b' },
  { service: '' },
  { service: 'x'.repeat(65) },
  { service: 5 },
  { service: null },
  { unique_key: '' },
  { unique_key: 'x'.repeat(257) },
  { unique_key: 5 },
  { unique_key: null },
];

for (const options of BAD_OPTIONS) {
  test(`bad options ${JSON.stringify(options).slice(0, 40)} are refused before sending with the servers message`, async () => {
    const expected = await serverSays('corral_enqueue', 1, 'corral:{prompts}', '{}', JSON.stringify(options));
    await redis.resetStats();
    for (const call of [() => client.enqueue(Q, {}, options), () => client.enqueueMany(Q, [1], options)]) {
      await assert.rejects(call(), (e) => {
        assert.ok(e instanceof corral.InvalidOptionError, e.stack);
        assert.deepEqual([e.code, e.message], ['BADOPTION', expected]);
        return true;
      });
    }
    assert.equal(await redis.fcalls(), 0);
  });
}

for (const name of ['', 'a{b', 'a}b', 'a b', 'x'.repeat(65), 'jobsé', 'é'.repeat(50)]) {
  test(`bad queue name ${JSON.stringify(name).slice(0, 20)} is refused before sending with the servers message`, async () => {
    const expected = await serverSays('corral_enqueue', 1, `corral:{${name}}`, '{}');
    await redis.resetStats();
    for (const call of [() => client.enqueue(name, {}), () => client.enqueueMany(name, [1]),
      () => client.job(name, 1), () => client.wait(name, 1, { timeout: 1000 }), () => client.cancel(name, 1)]) {
      await assert.rejects(call(), (e) => {
        assert.ok(e instanceof corral.InvalidQueueNameError, e.stack);
        assert.deepEqual([e.code, e.message], ['BADNAME', expected]);
        return true;
      });
    }
    assert.equal(await redis.fcalls(), 0);
  });
}

test('options the server decides are passed on and refused there', async () => {
  await assert.rejects(client.enqueue(Q, {}, { priority: 'urgent' }), (e) => e instanceof corral.CorralError &&
    e.message === 'queue "prompts": unknown priority "urgent" (known: high, normal, low, or 0-2)');
  const id = await client.enqueue(Q, {}, { max_attempts: '5' });
  assert.equal((await client.job(Q, id)).max_attempts, 5);
});

test('options that are not an object are refused before sending', async () => {
  for (const bad of ['high', 5, [1]]) {
    await assert.rejects(client.enqueue(Q, {}, bad), (e) => e instanceof corral.InvalidOptionError &&
      e.message === 'queue "prompts": options must be a JSON object');
  }
  assert.equal(await redis.fcalls(), 0);
});

const NOT_JSON = [
  [new Set([1]), null], // a Set writes as {}: JSON.stringify's own rule, taken as is
  [NaN, 'NaN is not a JSON number'],
  [{ a: Infinity }, 'Infinity is not a JSON number'],
  [[1, () => 1], 'a function is not a JSON value'],
  [{ s: Symbol('x') }, 'a symbol is not a JSON value'],
  [undefined, 'undefined is not a JSON value'],
  [{ n: 1n }, 'Do not know how to serialize a BigInt'],
];

test('a payload that is not JSON-serialisable is refused before sending', async () => {
  const cyclic = {};
  cyclic.self = cyclic;
  for (const [payload, why] of [...NOT_JSON, [cyclic, 'circular']]) {
    if (why === null) continue;
    await assert.rejects(client.enqueue(Q, payload), (e) => {
      assert.ok(e instanceof corral.InvalidPayloadError, e.stack);
      assert.ok(e.message.startsWith('queue "prompts": payload is not JSON-serialisable ('), e.message);
      assert.ok(e.message.includes(why), `${e.message} does not say ${why}`);
      return true;
    });
  }
  assert.equal(await redis.fcalls(), 0);
  assert.equal(await redis.admin.get('corral:{prompts}:seq'), null);
});

test('server refusals pass through with code and message', async () => {
  let e = await client.enqueue('nosuch', {}).catch((x) => x);
  assert.ok(e instanceof corral.UnknownQueueError);
  assert.equal(e.code, 'NOQUEUE');
  assert.equal(e.message, 'unknown queue "nosuch": no corrald or corralctl has declared it (corral_declare)');
  e = await client.enqueue(Q, 'x'.repeat(2000)).catch((x) => x);
  assert.ok(e instanceof corral.PayloadTooLargeError);
  assert.equal(e.code, 'TOOBIG');
  assert.equal(e.message, 'queue "prompts": payload is 2002 bytes, limit is 1000 (max_payload)');
});

// A stand-in "corral" library whose corral_enqueue answers the error reply
// it is given as its payload: the client sees the replies the library sends.
const STAND_IN = `#!lua name=corral
redis.register_function('corral_enqueue', function(keys, args)
    return redis.error_reply(cjson.decode(args[1]))
end)
`;

// The code words of the Function library's error replies, from its CODES
// table (queue/lua/prelude.lua; docs/protocol.md lists the same).
const PRELUDE = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'queue', 'lua', 'prelude.lua'), 'utf8');
const LIBRARY_WORDS = [.../^local CODES = \{\n([\s\S]*?)^\}/m.exec(PRELUDE)[1]
  .matchAll(/^\s+([A-Z]+) = true,/gm)].map((m) => m[1]);

test('the client knows every word of the library and no other', () => {
  assert.ok(LIBRARY_WORDS.length >= 12);
  assert.deepEqual(Object.keys(corral.CODE_CLASSES).sort(), [...LIBRARY_WORDS].sort());
});

for (const word of [...LIBRARY_WORDS, 'ERR', 'SOMENEWWORD']) {
  test(`code word ${word} rejects with its class, code and message`, async () => {
    await redis.admin.call('FUNCTION', 'LOAD', 'REPLACE', STAND_IN);
    const e = await client.enqueue(Q, `${word} queue "prompts": what went wrong`).catch((x) => x);
    const Cls = corral.CODE_CLASSES[word] || corral.ServerError;
    assert.equal(e.constructor, Cls);
    assert.equal(Cls === corral.ServerError, !LIBRARY_WORDS.includes(word));
    assert.ok(e instanceof corral.CorralError && e instanceof Error);
    assert.deepEqual([e.code, e.message, String(e)],
      [word, 'queue "prompts": what went wrong', `${word} queue "prompts": what went wrong`]);
  });
}

test('redis own errors reject with ServerError and their word', async () => {
  await redis.admin.call('FUNCTION', 'DELETE', 'corral');
  const e = await client.enqueue(Q, {}).catch((x) => x);
  assert.ok(e instanceof corral.ServerError);
  assert.equal(e.code, 'ERR');
  assert.match(e.message, /Function not found/);
});

test('every class of the table has its code word', () => {
  for (const [word, Cls] of Object.entries(corral.CODE_CLASSES)) {
    assert.ok(new Cls('x') instanceof corral.CorralError);
    assert.equal(new Cls('x').code, word);
  }
});
