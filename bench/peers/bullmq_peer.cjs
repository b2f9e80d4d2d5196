// BullMQ harness, run by bench/peers/run.py with node as
//   node bullmq_peer.cjs worker CONCURRENCY    a Worker on queue "default"
//   node bullmq_peer.cjs fill N [MS] | enqueue N single|bulk | ai N | paced MS RATE:S,.. |
//                        latency N GAP_MS | long SECONDS TAG
// PEERS_REDIS_URL names the Redis. BullMQ comes from the npm registry into
// bench/peers/.node (bench/peers/install.sh); completed jobs stay in the
// queue's "completed" set (BullMQ's default), which is how the driver counts.
const path = require('path');
const { Queue, Worker } = require(path.join(__dirname, '.node', 'node_modules', 'bullmq'));
const IORedis = require(path.join(__dirname, '.node', 'node_modules', 'ioredis'));

const url = new URL(process.env.PEERS_REDIS_URL || 'redis://127.0.0.1:6379/0');
const connection = { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null };
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let client; // the jobs' own connection, for the timestamps the driver reads

async function processor(job) {
  const d = job.data;
  if (job.name === 'stamp') await client.rpush('peers:lat', nowUs() - d.t_us);
  else if (job.name === 'long') {
    await client.rpush(`peers:starts:${d.tag}`, `${Date.now() / 1000} ${process.pid}`);
    await sleep(d.seconds * 1000);
  } else if (job.name === 'sleep') await sleep(d.ms);
  else if (job.name === 'ai') {
    const res = await fetch(process.env.PEERS_AI_URL, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"prompt": "hi"}',
    });
    await res.text();
    if (!res.ok) throw new Error(`AI service answered ${res.status}`);
  }
}

async function main(argv) {
  const cmd = argv[0];
  if (cmd === 'worker') {
    client = new IORedis(connection);
    const w = new Worker('default', processor, { connection, concurrency: Number(argv[1] || 4) });
    await w.waitUntilReady();
    process.on('SIGTERM', async () => { await w.close(); process.exit(0); });
    return;
  }
  const q = new Queue('default', { connection });
  await q.waitUntilReady();
  const n = Number(argv[1]);
  if (cmd === 'fill') {
    const job = argv[2] ? { name: 'sleep', data: { ms: Number(argv[2]) } } : { name: 'noop', data: {} };
    for (let i = 0; i < n; i += 1000) await q.addBulk(Array.from({ length: Math.min(1000, n - i) }, () => job));
  } else if (cmd === 'enqueue') {
    const t0 = performance.now();
    if (argv[2] === 'bulk') {
      for (let i = 0; i < n; i += 1000)
        await q.addBulk(Array.from({ length: Math.min(1000, n - i) }, () => ({ name: 'noop', data: {} })));
    } else {
      for (let i = 0; i < n; i++) await q.add('noop', {});
    }
    console.log(((performance.now() - t0) / 1000).toFixed(6));
  } else if (cmd === 'latency') {
    for (let i = 0; i < n; i++) {
      await q.add('stamp', { t_us: nowUs() });
      await sleep(Number(argv[2]));
    }
  } else if (cmd === 'paced') {
    let t0 = performance.now();
    console.log('go');
    for (const phase of argv[2].split(',')) {
      const [rate, secs] = phase.split(':').map(Number);
      for (let k = 0; k < Math.floor(rate * secs); k++) {
        const d = t0 + (k * 1000) / rate - performance.now();
        if (d > 0) await sleep(d);
        await q.add('sleep', { ms: Number(argv[1]) });
      }
      t0 += secs * 1000;
    }
  } else if (cmd === 'ai') {
    // BullMQ retries nothing by default (attempts 1): 5 attempts,
    // exponential back-off from 1 s.
    const opts = { attempts: 5, backoff: { type: 'exponential', delay: 1000 } };
    for (let i = 0; i < n; i += 1000)
      await q.addBulk(Array.from({ length: Math.min(1000, n - i) }, () => ({ name: 'ai', data: {}, opts })));
  } else if (cmd === 'long') {
    await q.add('long', { seconds: Number(argv[1]), tag: argv[2] });
  } else {
    console.error(`bullmq_peer: unknown command ${cmd}`);
    process.exit(2);
  }
  await q.close();
}

main(process.argv.slice(2)).catch((e) => { console.error(e); process.exit(1); });
