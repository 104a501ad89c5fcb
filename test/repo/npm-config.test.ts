// npm reads the repository's own configuration on every `npm` and `npx tl`: it must hold nothing npm warns about, and
// the dependency install scripts tl does not need (onnxruntime-node's CUDA download above all) stay unrun.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

describe("the repository's npm configuration", () => {
  it('makes npm print no warning, and denies the install scripts of onnxruntime-node, core-js and protobufjs', () => {
    // npm writes its logs and update check under HOME, or under the cache an outer npm (npm test, npx) names in the
    // environment: a home and a cache of the test's, not the user's.
    const home = tempDir();
    const env = { ...process.env, HOME: home, npm_config_cache: join(home, '.npm'), npm_config_logs_dir: join(home, 'logs'), npm_config_loglevel: 'warn', npm_config_update_notifier: 'false' };
    const r = spawnSync('npm', ['config', 'list'], { cwd: ROOT, encoding: 'utf8', env });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/npm warn/i);
    const pkg = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };
    expect(pkg.allowScripts).toEqual({ 'onnxruntime-node': false, 'core-js': false, protobufjs: false });
  });
});
