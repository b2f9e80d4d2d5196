// The ESM entry exports what the CommonJS one does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import corral, { Client, CorralError, CODE_CLASSES, WaitTimeoutError } from 'corral-client';

const cjs = createRequire(import.meta.url)('corral-client');

test('the ESM entry exports the CommonJS classes by name and as default', () => {
  assert.equal(Client, cjs.Client);
  assert.equal(CorralError, cjs.CorralError);
  assert.equal(CODE_CLASSES, cjs.CODE_CLASSES);
  assert.equal(WaitTimeoutError, cjs.WaitTimeoutError);
  assert.equal(corral, cjs);
});
