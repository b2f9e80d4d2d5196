'use strict';
// Shared by the client's tests: a private redis-server on a unix socket in a
// temp dir, the Function library loaded (build/gen/corral.lua, as the
// programs embed it), and corrald with the echo handler where a job must end. Nothing here is a test.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const Redis = require('ioredis');

const REPO = path.resolve(__dirname, '..', '..', '..');
const BUILD = process.env.CORRAL_BUILD || path.join(REPO, 'build');

async function waitUntil(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function librarySource() {
  return fs.readFileSync(path.join(BUILD, 'gen', 'corral.lua'), 'utf8');
}

/** Starts a redis-server; resolves to {socket, url, admin, stop()}. */
async function startRedis() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-node-'));
  const socket = path.join(dir, 'redis.sock');
  const proc = spawn('redis-server', ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700',
    '--dir', dir, '--save', '', '--appendonly', 'no', '--loglevel', 'warning',
    '--logfile', path.join(dir, 'redis.log')], { stdio: 'ignore' });
  let exited = false;
  proc.on('exit', () => { exited = true; });
  await waitUntil(() => {
    if (exited) throw new Error(`redis-server exited at start; see ${dir}/redis.log`);
    return fs.existsSync(socket);
  }, 10000, 'redis-server to listen');
  const admin = new Redis({ path: socket });
  await admin.ping();
  return {
    socket,
    url: `unix://${socket}`,
    admin,
    /** FLUSHALL, the library loaded, a queue declared. */
    async fresh(queue = 'prompts', settings = { max_payload: 1000 }) {
      await admin.flushall();
      await admin.call('FUNCTION', 'LOAD', 'REPLACE', librarySource());
      if (queue) await admin.call('FCALL', 'corral_declare', 1, `corral:{${queue}}`, JSON.stringify(settings));
      await admin.call('CONFIG', 'RESETSTAT');
    },
    /** FCALLs run since the last fresh() or resetStats(). */
    async fcalls() {
      const info = await admin.info('commandstats');
      let n = 0;
      for (const m of info.matchAll(/^cmdstat_(fcall|fcall_ro):calls=(\d+)/gm)) n += Number(m[2]);
      return n;
    },
    async resetStats() {
      await admin.call('CONFIG', 'RESETSTAT');
    },
    async stop() {
      admin.disconnect();
      proc.kill('SIGKILL');
      await new Promise((r) => (exited ? r() : proc.on('exit', r)));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts corrald with one echo worker on queue prompts; resolves to a stop
 * function, or null when corrald is not built. */
async function startCorrald(redis) {
  const exe = path.join(BUILD, 'corrald');
  if (!fs.existsSync(exe)) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-node-d-'));
  const conf = path.join(dir, 'corral.conf');
  fs.writeFileSync(conf, `[redis]\nurl = unix://${redis.socket}\n` +
    '[pool]\nmin = 1\nmax = 1\nconcurrency = 4\ndrain_timeout = 5s\n' +
    '[queue prompts]\nhandler = echo\n');
  const log = fs.openSync(path.join(dir, 'corrald.log'), 'w');
  const proc = spawn(exe, ['-c', conf], { stdio: ['ignore', 'ignore', log], detached: true });
  let exited = false;
  proc.on('exit', () => { exited = true; });
  // corrald's heartbeat says it is up
  await waitUntil(async () => {
    if (exited) throw new Error(fs.readFileSync(path.join(dir, 'corrald.log'), 'utf8'));
    return (await redis.admin.exists(`corral:host:${os.hostname()}`)) === 1;
  }, 15000, 'corrald to start');
  return async () => {
    if (!exited) {
      proc.kill('SIGTERM');
      const killer = setTimeout(() => process.kill(-proc.pid, 'SIGKILL'), 20000);
      await new Promise((r) => (exited ? r() : proc.on('exit', r)));
      clearTimeout(killer);
    }
    fs.closeSync(log);
    const text = fs.readFileSync(path.join(dir, 'corrald.log'), 'utf8');
    fs.rmSync(dir, { recursive: true, force: true });
    if (/Sanitizer|runtime error/.test(text)) throw new Error(text);
  };
}

/** Starts the AI-service stand-in (tests/aistub.py) and a corral-worker on
 * queue prompts calling it (handler http); resolves to a stop function, or
 * null when corral-worker is not built or there is no python3. */
async function startStreamingWorker(redis) {
  const exe = path.join(BUILD, 'corral-worker');
  const python = ['/usr/bin/python3', 'python3'].find((p) => !p.includes('/') || fs.existsSync(p));
  if (!fs.existsSync(exe) || !python) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-node-w-'));
  const portFile = path.join(dir, 'stub.port');
  const stub = spawn(python, [path.join(REPO, 'tests', 'aistub.py'), '--port-file', portFile],
    { stdio: 'ignore' });
  let stubExited = false;
  stub.on('exit', () => { stubExited = true; });
  await waitUntil(() => {
    if (stubExited) throw new Error('aistub.py exited at start');
    return fs.existsSync(portFile);
  }, 10000, 'the AI-service stand-in to listen');
  const port = fs.readFileSync(portFile, 'utf8').trim();
  fs.writeFileSync(path.join(dir, 'ai.key'), 'sk-test-node\n', { mode: 0o600 });
  const conf = path.join(dir, 'worker.conf');
  fs.writeFileSync(conf, `[redis]\nurl = unix://${redis.socket}\n` +
    '[pool]\nconcurrency = 4\ndrain_timeout = 10s\n' +
    '[queue prompts]\nhandler = http\nservice = ai\nbackoff = 50ms..100ms\ntimeout = 5s\n' +
    `[service ai]\nurl = http://127.0.0.1:${port}\napi_key_file = ${path.join(dir, 'ai.key')}\n`);
  const log = fs.openSync(path.join(dir, 'worker.log'), 'w');
  const proc = spawn(exe, ['-c', conf], { stdio: ['ignore', 'ignore', log] });
  let exited = false;
  proc.on('exit', () => { exited = true; });
  await waitUntil(async () => {
    if (exited) throw new Error(fs.readFileSync(path.join(dir, 'worker.log'), 'utf8'));
    return (await redis.admin.exists('corral:{prompts}:conf')) === 1;
  }, 15000, 'corral-worker to declare its queue');
  return async () => {
    if (!exited) {
      proc.kill('SIGTERM');
      const killer = setTimeout(() => proc.kill('SIGKILL'), 20000);
      await new Promise((r) => (exited ? r() : proc.on('exit', r)));
      clearTimeout(killer);
    }
    if (!stubExited) {
      stub.kill('SIGKILL');
      await new Promise((r) => (stubExited ? r() : stub.on('exit', r)));
    }
    fs.closeSync(log);
    const text = fs.readFileSync(path.join(dir, 'worker.log'), 'utf8');
    fs.rmSync(dir, { recursive: true, force: true });
    if (/Sanitizer|runtime error/.test(text)) throw new Error(text);
  };
}

/** The hooks every client test file shares: a private redis-server for the
 * file, a Client on it (set hands both to the file), and an empty database
 * before each test. */
function useRedisAndClient(set) {
  const { before, after, beforeEach } = require('node:test');
  const { Client } = require('..');
  let redis;
  let client;
  before(async () => {
    redis = await startRedis();
    client = new Client(redis.url);
    set(redis, client);
  });
  after(async () => {
    await client.close();
    await redis.stop();
  });
  beforeEach(async () => {
    await redis.fresh();
  });
}

module.exports = {
  REPO, BUILD, startRedis, startCorrald, startStreamingWorker, waitUntil, librarySource,
  useRedisAndClient,
};
