'use strict';
// The TypeScript declarations compile against a program that uses every
// call as the README shows it (tsc --noEmit, strict).
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const path = require('node:path');

test('the type declarations describe every call', () => {
  const tsc = path.join(__dirname, '..', 'node_modules', 'typescript', 'bin', 'tsc');
  const out = execFileSync(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', '--target', 'es2020',
    '--module', 'nodenext', '--moduleResolution', 'nodenext', '--esModuleInterop',
    path.join(__dirname, 'types', 'usage.ts')], { encoding: 'utf8', cwd: path.join(__dirname, '..') });
  assert.equal(out, '');
});
