// Compiled by types.test.js with tsc --noEmit: the declarations (index.d.ts)
// describe the calls as the README shows them.
import Redis from 'ioredis';
import corral, {
  Client, CorralError, CODE_CLASSES, FollowPiece, InvalidOptionError, Job, WaitTimeoutError,
} from 'corral-client';

async function main(): Promise<void> {
  const c = new Client('redis://localhost:6379/0', { prefix: 'corral' });
  const c2 = new Client({ path: '/run/redis/redis.sock' });
  const c3 = new Client(new Redis());
  const id: number = await c.enqueue('prompts', { q: 1 }, { priority: 'high', delay_ms: 5 });
  const ids: number[] = await c.enqueueMany('prompts', [1, 2], { max_attempts: 2 });
  const job: Job | null = await c.job('prompts', id);
  const done: Job = await c.wait('prompts', ids[0], { timeout: 1000 });
  const ms: number | undefined = done.timings.run_ms;
  const state: string = done.state;
  let text = '';
  for await (const piece of c.follow('prompts', id, { timeout: 60000 })) text += piece;
  for await (const piece of c.follow('prompts', '7')) text += piece.toUpperCase();
  for await (const { run, text: t } of c.follow('prompts', id, { runs: true, timeout: 5 })) text += `${run}:${t}`;
  await c.cancel('prompts', '7');
  try {
    await c.enqueue('prompts', {}, { priority: 1 });
  } catch (e) {
    if (e instanceof WaitTimeoutError || e instanceof InvalidOptionError) console.log(e.code);
    if (e instanceof CorralError) console.log(e.code, e.message, e.enqueued, e.batchStart);
  }
  const p: FollowPiece = { run: 1, text };
  console.log(job, ms, state, p, CODE_CLASSES.NOQUEUE, corral.Client === Client);
  await Promise.all([c.close(), c2.close(), c3.close()]);
}

// @ts-expect-error: an unknown option is a type error
new Client('redis://x').enqueue('q', {}, { prio: 1 });

main();
