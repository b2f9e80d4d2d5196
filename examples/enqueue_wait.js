#!/usr/bin/env node
// Enqueue a job on a corral queue and wait for its result, with the Node
// client (clients/node: npm install ./clients/node, or npm ci there).
//
// usage: node enqueue_wait.js REDIS_URL QUEUE PAYLOAD_JSON [TIMEOUT_S]
//   e.g. node enqueue_wait.js unix:///run/redis/redis.sock prompts '{"messages": []}' 30
// Prints the result and exits 0 when done; 1 when dead or cancelled; 124 on timeout.
'use strict';
let corral;
try {
  corral = require('corral-client');
} catch (e) { // run from a checkout without installing the client
  if (e.code !== 'MODULE_NOT_FOUND') throw e;
  corral = require('../clients/node');
}

async function main() {
  const [url, queue, payload, timeout] = process.argv.slice(2);
  if (!payload) {
    console.error('usage: node enqueue_wait.js REDIS_URL QUEUE PAYLOAD_JSON [TIMEOUT_S]');
    return 2;
  }
  const client = new corral.Client(url);
  try {
    let id;
    try {
      id = await client.enqueue(queue, JSON.parse(payload), { priority: 'high' });
    } catch (e) {
      if (!(e instanceof corral.CorralError)) throw e;
      console.error(`enqueue refused: ${e.message}`);
      return 1;
    }
    console.error(`job ${id}`);
    let job;
    try {
      job = await client.wait(queue, id, timeout ? { timeout: Number(timeout) * 1000 } : {});
    } catch (e) {
      if (!(e instanceof corral.WaitTimeoutError)) throw e;
      console.error(e.message);
      return 124;
    }
    if (job.state === 'done') {
      console.log(job.result);
      return 0;
    }
    console.error(`job ${id} ${job.state}: ${job.error || ''}`);
    return 1;
  } finally {
    await client.close();
  }
}

main().then((code) => process.exit(code), (e) => { console.error(e); process.exit(1); });
