// The options of tl finetune are written once (src/options/): flags, help, limits and defaults come from that table
// alone, and a resumed run's config.json is read back with the same schema a new run is checked with.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { FINETUNE_OPTIONS, RESUMABLE, savedSettingsSchema } from '../../src/options/finetune.js';
import { DATA_CHECK_OPTIONS, EVAL_OPTIONS, EXPORT_OPTIONS, EXTRACT_OPTIONS, PREDICT_OPTIONS, PRUNE_OPTIONS, SERVE_OPTIONS } from '../../src/options/commands.js';
import { DATA_OPTIONS, INFERENCE_OPTIONS, MODEL_INPUT_OPTIONS, SHARD_OPTIONS, TOP } from '../../src/options/shared.js';
import { defaultOf, flagOfKey, longFlag } from '../../src/util/options.js';
import { makeColourDataset } from '../helpers/synthetic.js';
import { tempDir } from '../helpers/tmp.js';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* sources(path);
    else if (name.endsWith('.ts')) yield path;
  }
}

/**
 * Flags of the tables that commands also declare as required options of their own (no default to restate): tl eval's
 * and predict's --model, the --out of export, cache and merge, tl cache's --freeze, tl slurm's --shards (the array's size).
 */
const SAME_FLAG_OTHER_OPTION = new Set(['--model', '--out', '--freeze', '--shards']);

/** Where the settings of tl finetune are used: its core and its command (other commands' cores have their own). */
const SETTINGS_USERS = /^(train\/|cli\/finetune\.ts$)/;

describe('the options table', () => {
  it('declares each flag once: no command and no core writes a flag, a default or a limit of the table again', () => {
    const tables = { ...FINETUNE_OPTIONS, ...DATA_OPTIONS, ...MODEL_INPUT_OPTIONS, ...SHARD_OPTIONS };
    const everyTable = [FINETUNE_OPTIONS, DATA_OPTIONS, MODEL_INPUT_OPTIONS, SHARD_OPTIONS, INFERENCE_OPTIONS, EXTRACT_OPTIONS, EVAL_OPTIONS, PREDICT_OPTIONS, EXPORT_OPTIONS, DATA_CHECK_OPTIONS, PRUNE_OPTIONS, SERVE_OPTIONS, { top: TOP }];
    const flags = [...new Set(everyTable.flatMap((t) => Object.values(t).map(longFlag)))];
    const found: string[] = [];
    for (const file of sources(SRC)) {
      const rel = relative(SRC, file);
      if (rel.startsWith('options/')) continue;
      const text = readFileSync(file, 'utf8');
      for (const flag of flags) {
        if (SAME_FLAG_OTHER_OPTION.has(flag)) continue;
        // A commander declaration: .option('--x ...'), .requiredOption(...), new Option(...).
        if (new RegExp(`(option|Option)\\(\\s*['"\`](-\\w, )?${flag}\\b`).test(text)) found.push(`${rel} declares ${flag}`);
      }
      // Commander sets no defaults: a third argument to .option() would be a second one beside the schema's.
      for (const m of text.matchAll(/\.option\(\s*'[^']*',\s*(?:'[^']*'|"[^"]*"|`[^`]*`),\s*['"\d]/g)) found.push(`${rel} gives commander a default: ${m[0]}`);
      // A default restated where the parsed settings are used: `options.gamma ?? 0.1` (they carry every default).
      if (SETTINGS_USERS.test(rel)) for (const [key, spec] of Object.entries(tables)) {
        if (defaultOf(spec) !== undefined && new RegExp(`options\\.${key}\\s*\\?\\?`).test(text)) found.push(`${rel} restates the default of ${flagOfKey(key)}`);
      }
    }
    expect(found).toEqual([]);
  });

  it('--help states the default of every option from its schema', async () => {
    const r = await runCli(['finetune', '--help']);
    expect(r.exitCode).toBe(0);
    const help = r.stdout.replace(/\s+/g, ' ');
    // Each option's entry runs from its flag to the next option's.
    const specs = Object.entries(FINETUNE_OPTIONS);
    const starts = specs.map(([, spec]) => help.indexOf(` ${spec.flag} `));
    expect(starts.every((i) => i > 0)).toBe(true);
    specs.forEach(([key, spec], i) => {
      const value = defaultOf(spec);
      const entry = help.slice(starts[i]!, Math.min(...[...starts, help.indexOf(' --config ')].filter((s) => s > starts[i]!)));
      if (value !== undefined && value !== false) expect(entry.trim(), key).toMatch(new RegExp(`default: ${String(value).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)$`));
    });
  });
});

describe("README's table of tl finetune's options", () => {
  it('gives each default the table gives', () => {
    const readme = readFileSync(resolve(SRC, '../README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### `tl finetune DATA`'), readme.indexOf('### Choosing what to transfer'));
    const byFlag = new Map(Object.values(FINETUNE_OPTIONS).map((spec) => [longFlag(spec), spec]));
    let compared = 0;
    for (const row of section.split('\n').filter((l) => l.startsWith('| `'))) {
      const [flagCell, defaultCell] = row.split(/(?<!\\)\|/).slice(1, 3).map((c) => c.trim());
      const flags = [...flagCell!.matchAll(/(?<![\w-])--[a-z][\w-]*/g)].map((m) => m[0]);
      const values = defaultCell!.split(', ').map((v) => /^`([^`]*)`$/.exec(v)?.[1]);
      if (flags.length !== values.length || values.some((v) => v === undefined)) continue;
      flags.forEach((flag, i) => {
        const spec = byFlag.get(flag);
        if (!spec || defaultOf(spec) === undefined) return;
        expect(values[i], flag).toBe(String(defaultOf(spec)));
        compared++;
      });
    }
    expect(compared).toBeGreaterThan(25);
  });
});

describe('a resumed run', () => {
  const data = tempDir();
  let run: string;
  beforeAll(async () => {
    await makeColourDataset(data, 2, 8, 32);
    run = join(tempDir(), 'run');
    const r = await runCli(['finetune', data, '--out', run, '--freeze', 'all', '--epochs', '1', '--input-size', '32', '--batch-size', '4', '--engine', 'tfjs', '--calibrate', 'none', '-q']);
    expect(r.exitCode, r.stderr).toBe(0);
  });

  it("reads config.json with the table's schema: the run saved every default, as the table states it", () => {
    const config = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')) as Record<string, unknown>;
    const settings = savedSettingsSchema.parse(config) as Record<string, unknown>;
    // Options the run resolves (auto, default, the model's own) are saved resolved; every other one as its default.
    const resolved = new Set(['freeze', 'epochs', 'lr', 'momentum', 'inputSize', 'preprocess', 'bn', 'workers', 'engine', 'device', 'out', 'batchSize', 'calibrate']);
    for (const [key, spec] of Object.entries(FINETUNE_OPTIONS)) {
      if (resolved.has(key) || defaultOf(spec) === undefined) continue;
      expect(settings[key], key).toEqual(defaultOf(spec));
      expect(config[key], key).toEqual(defaultOf(spec));
    }
  });

  it("is refused when its config.json holds a value a new run could not be given (the same limits)", async () => {
    const copy = join(tempDir(), 'run');
    await runCli(['finetune', data, '--out', copy, '--freeze', 'all', '--epochs', '1', '--input-size', '32', '--batch-size', '4', '--engine', 'tfjs', '--calibrate', 'none', '-q']);
    const path = join(copy, 'config.json');
    const config = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    writeFileSync(path, JSON.stringify({ ...config, labelSmoothing: 1 }));
    const fresh = await runCli(['finetune', data, '--label-smoothing', '1', '-q']);
    expect(fresh.exitCode).toBe(2);
    expect(fresh.stderr).toMatch(/Invalid --label-smoothing/);
    const resumed = await runCli(['finetune', '--resume', copy, '--epochs', '2', '-q']);
    expect(resumed.exitCode).toBe(2);
    expect(resumed.stderr).toMatch(/not a tl run config \(labelSmoothing: /);
  });

  it('may change exactly the options the table marks, and says which in its help and its refusal', async () => {
    const changed = await runCli(['finetune', '--resume', run, '--lr', '0.1']);
    expect(changed.exitCode).toBe(2);
    const allowed = /allowed: ([^)]*)\)/.exec(changed.stderr)?.[1]?.split(', ');
    expect(allowed).toEqual(expect.arrayContaining(RESUMABLE.map(flagOfKey)));
    const help = (await runCli(['finetune', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(/only ([^)]*?) may change/.exec(help)?.[1]?.split(', ')).toEqual(allowed);
    // Each one given to a finished run is taken: more epochs train on, on the engine asked for.
    const more = await runCli(['finetune', '--resume', run, '--epochs', '2', '--patience', '3', '--workers', '1', '--cache-mb', '64', '--engine', 'tfjs', '--device', 'cpu', '--json']);
    expect(more.exitCode, more.stderr).toBe(0);
    expect((JSON.parse(more.stdout) as { history: unknown[] }).history).toHaveLength(2);
    const saved = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect([saved.epochs, saved.patience, saved.workers, saved.cacheMb]).toEqual([2, 3, 1, 64]);
  });
});

describe('renamed options', () => {
  it('an old flag is refused with its new name; an old config.json or --config file is read under the new names', async () => {
    const data = tempDir();
    await makeColourDataset(data, 2, 4, 32);
    const r = await runCli(['finetune', data, '--features', tempDir()]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('error: --features is now --cache (same meaning).');
    const old = savedSettingsSchema.parse({ data, out: tempDir(), features: '/some/cache', featureCacheMb: 64 }) as Record<string, unknown>;
    expect([old.cache, old.cacheMb, 'features' in old]).toEqual(['/some/cache', 64, false]);
    expect((savedSettingsSchema.parse({ data, out: tempDir(), featureCacheBytes: 64 * 2 ** 20 }) as Record<string, unknown>).cacheMb).toBe(64);
    const file = join(tempDir(), 'old.json');
    writeFileSync(file, JSON.stringify({ featureCacheMb: 1 }));
    const c = await runCli(['finetune', data, '--config', file, '--epochs', 'x']);
    // The old key passed the file's check; the bad flag is what fails.
    expect(c.stderr).toContain("--epochs: expected");
  });
});
