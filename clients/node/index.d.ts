// Type declarations of corral-client (index.js, index.mjs).
import Redis, { RedisOptions } from 'ioredis';

/** Options of corral_enqueue and corral_enqueue_many (docs/protocol.md). */
export interface EnqueueOptions {
  /** Priority name ("high") or level index (0 = highest). */
  priority?: string | number;
  /** Run no earlier than this from now (0 to 31,622,400,000). */
  delay_ms?: number;
  /** Runs before the job is dead (1 to 1,000). */
  max_attempts?: number;
  /** The handler's time limit for one run (1 to 86,400,000). */
  timeout_ms?: number;
  /** The AI service the job calls (for breakers). */
  service?: string;
  /** While a job with this key exists, enqueue returns its id. */
  unique_key?: string;
  /** Milliseconds from now; not started again after it (docs/protocol.md, "Deadlines"). */
  deadline_ms?: number;
}

export type JobState = 'queued' | 'scheduled' | 'active' | 'done' | 'dead' | 'cancelled';
export type JobId = number | string | bigint;

/** Times of a job (Unix ms, the Redis server's clock), those that are set. */
export interface JobTimings {
  created_ms?: number;
  run_at_ms?: number;
  queued_ms?: number;
  started_ms?: number;
  finished_ms?: number;
  /** From enqueue to the last start. */
  wait_ms?: number;
  /** From the last start to the end. */
  run_ms?: number;
}

/** A job as corral_job reports it (docs/protocol.md, "Reading a job"). */
export interface Job {
  id: number;
  queue: string;
  state: JobState;
  /** True once the job is done, dead or cancelled. */
  ended: boolean;
  priority: string | null;
  attempts: number;
  max_attempts: number | null;
  service: string | null;
  payload: string | null;
  /** The handler's output (done jobs), usually JSON text. */
  result: string | null;
  /** The last error: why a dead job died, or a retried job's last failure. */
  error: string | null;
  /** Token usage as the worker recorded it, when it does. */
  usage: Record<string, unknown> | null;
  created_ms: number | null;
  run_at_ms: number | null;
  queued_ms: number | null;
  started_ms: number | null;
  finished_ms: number | null;
  timeout_ms: number | null;
  worker: string | null;
  deferrals: number;
  unique_key: string | null;
  timings: JobTimings;
  /** The whole object corral_job answered, later fields included. */
  record: Record<string, unknown>;
}

export interface ClientOptions {
  /** The key prefix of corral.conf's [redis] section (default "corral"). */
  prefix?: string;
}

export interface WaitOptions {
  /** Milliseconds; none: no limit. */
  timeout?: number;
}

export interface FollowOptions {
  /** Milliseconds; none: no limit. WaitTimeoutError when it runs out before the end. */
  timeout?: number;
  /** Yield {run, text} rather than the text alone. */
  runs?: boolean;
}

/** A piece of a streamed answer with the run it was streamed in (follow's runs option). */
export interface FollowPiece {
  /** The job's run number: a retried job streams its answer again under the next one. */
  run: number;
  text: string;
}

export class Client {
  /**
   * urlOrOptions: a Redis URL ("redis://…", "rediss://…", "unix:///path"),
   * ioredis options, or an ioredis client of your own (used, never closed).
   */
  constructor(urlOrOptions?: string | RedisOptions | Redis, options?: ClientOptions);
  readonly prefix: string;
  readonly redis: Redis;
  /** Pushes one job; resolves to its id. */
  enqueue(queue: string, payload: unknown, options?: EnqueueOptions): Promise<number>;
  /** Pushes many jobs (batches of 1,000); resolves to their ids in order. */
  enqueueMany(queue: string, payloads: Iterable<unknown>, options?: EnqueueOptions): Promise<number[]>;
  /** The job as it is now, or null when there is no such job. */
  job(queue: string, id: JobId): Promise<Job | null>;
  /** The job once it has ended; WaitTimeoutError when options.timeout runs out. */
  wait(queue: string, id: JobId, options?: WaitOptions): Promise<Job>;
  /**
   * A streamed answer's text, piece by piece as the worker reads it, until
   * the answer is complete or the job was cancelled; nothing for an answer
   * that was not streamed (`for await (const piece of client.follow(q, id))`).
   */
  follow(queue: string, id: JobId, options: FollowOptions & { runs: true }): AsyncGenerator<FollowPiece, void, undefined>;
  follow(queue: string, id: JobId, options?: FollowOptions & { runs?: false }): AsyncGenerator<string, void, undefined>;
  /** Cancels a queued, scheduled or dead job. */
  cancel(queue: string, id: JobId): Promise<void>;
  /** Closes the connection the client opened. */
  close(): Promise<void>;
}

/** Base of every error the client throws for corral. */
export class CorralError extends Error {
  constructor(message: string, code?: string);
  /** The code word ("NOQUEUE"; "ERR" for Redis's generic word). */
  code: string;
  /** enqueueMany: ids of the jobs of batches before the refused one. */
  enqueued: number[];
  /** enqueueMany: index of the refused batch's first payload. */
  batchStart: number;
}
/** A code word this client does not know (Redis's own ERR, NOPERM, …). */
export class ServerError extends CorralError {}
/** BADARG: a call's arguments are malformed (a caller's bug). */
export class InvalidArgumentError extends CorralError {}
/** BADNAME: a bad queue or service name or key prefix. */
export class InvalidQueueNameError extends CorralError {}
/** NOQUEUE: the queue was never declared. */
export class UnknownQueueError extends CorralError {}
/** NOSERVICE: the service was never declared. */
export class UnknownServiceError extends CorralError {}
/** BADPAYLOAD: a payload missing, not JSON, or not JSON-serialisable. */
export class InvalidPayloadError extends CorralError {}
/** TOOBIG: a payload over the queue's max_payload. */
export class PayloadTooLargeError extends CorralError {}
/** BADOPTION: an unknown enqueue option or a bad value. */
export class InvalidOptionError extends CorralError {}
/** BADTENANT: the option tenant is not a tenant name. */
export class InvalidTenantError extends InvalidOptionError {}
/** BADTOKENS: the enqueue option tokens is not a whole number from 1 to 10^9. */
export class InvalidTokensError extends InvalidOptionError {}
/** BADSETTING: invalid queue or service settings. */
export class InvalidSettingError extends CorralError {}
/** NOJOB: no job of that id. */
export class NoSuchJobError extends CorralError {}
/** The base of JobRunningError, JobFinishedError and JobNotDeadError. */
export class JobStateError extends CorralError {}
/** RUNNING: the job is running and cannot be cancelled. */
export class JobRunningError extends JobStateError {}
/** FINISHED: the job already ended (done or cancelled). */
export class JobFinishedError extends JobStateError {}
/** NOTDEAD: the job is not dead, so it cannot be retried. */
export class JobNotDeadError extends JobStateError {}
/** BADDEADLINE: the option deadline_ms is not a positive integer of milliseconds. */
export class InvalidDeadlineError extends InvalidOptionError {}
/** Thrown by the client when wait's timeout runs out. */
export class WaitTimeoutError extends CorralError {}

/** The one table from code word to class. */
export const CODE_CLASSES: Readonly<Record<string, typeof CorralError>>;
/** The CorralError for an error reply's text ("NOQUEUE unknown queue …"). */
export function errorFromReply(text: string): CorralError;
/** Most payloads corral_enqueue_many takes in one call. */
export const MAX_BATCH: number;
export const FINAL_STATES: readonly JobState[];

declare const _default: {
  Client: typeof Client;
  CorralError: typeof CorralError;
  CODE_CLASSES: typeof CODE_CLASSES;
};
export default _default;
