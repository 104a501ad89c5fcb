// Every test file gets a model store of its own: a test that names no TL_HOME (or store) can never write into the
// user's ~/.cache/tl. Tests that need a particular store still pass their own.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const store = mkdtempSync(join(tmpdir(), 'tl-test-store-'));
process.env['TL_HOME'] = store;
afterAll(() => rmSync(store, { recursive: true, force: true }));
