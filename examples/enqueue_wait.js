#!/usr/bin/env node
// Enqueue a job on a corral queue and wait for its result, with node-redis
// (npm install redis@4).
//
// usage: node enqueue_wait.js REDIS_URL QUEUE PAYLOAD_JSON [TIMEOUT_S]
// Prints the result and exits 0 when done; 1 when dead or cancelled; 124 on timeout.
'use strict';
const { createClient } = require('redis');

async function enqueue(client, queue, payload, options) {
  const args = [JSON.stringify(payload)];
  if (options) args.push(JSON.stringify(options));
  return client.sendCommand(['FCALL', 'corral_enqueue', '1', queue, ...args]);
}

async function wait(client, queue, id, timeoutS = 0, prefix = 'corral') {
  const fin = `${prefix}:{${queue}}:fin:${id}`;
  // BLMOVE from the list to itself reads the final state without taking it.
  const state = await client.sendCommand(
    ['BLMOVE', fin, fin, 'RIGHT', 'RIGHT', String(timeoutS)]);
  if (state === null) return null;
  return JSON.parse(await client.sendCommand(['FCALL_RO', 'corral_job', '1', queue, id]));
}

async function main() {
  const [url, queue, payload, timeout] = process.argv.slice(2);
  if (!payload) {
    console.error('usage: node enqueue_wait.js REDIS_URL QUEUE PAYLOAD_JSON [TIMEOUT_S]');
    return 2;
  }
  const client = createClient({ url: url.startsWith('unix://')
    ? undefined : url, socket: url.startsWith('unix://') ? { path: url.slice(7) } : undefined });
  await client.connect();
  try {
    let id;
    try {
      id = await enqueue(client, queue, JSON.parse(payload), { priority: 'high' });
    } catch (e) {
      console.error(`enqueue refused: ${e.message}`);
      return 1;
    }
    console.error(`job ${id}`);
    const job = await wait(client, queue, id, Number(timeout || 0));
    if (job === null) {
      console.error(`job ${id} did not end within ${timeout} s`);
      return 124;
    }
    if (job.state === 'done') {
      console.log(job.result);
      return 0;
    }
    console.error(`job ${id} ${job.state}: ${job.error || ''}`);
    return 1;
  } finally {
    await client.quit();
  }
}

main().then((code) => process.exit(code), (e) => { console.error(e); process.exit(1); });
