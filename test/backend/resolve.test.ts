import { describe, expect, it } from 'vitest';
import { backendChoiceFromEnv, explainNativeFailure, loadBackend, type ModuleImporter } from '../../src/backend/index.js';
import { BackendError } from '../../src/errors.js';

function notFound(spec: string): Error {
  return Object.assign(new Error(`Cannot find package '${spec}' imported from /x/index.js`), { code: 'ERR_MODULE_NOT_FOUND' });
}

/** Real imports, except the packages named in `broken`, which throw the given error. */
function importer(broken: Record<string, Error>): ModuleImporter {
  return async (spec) => {
    const err = broken[spec];
    if (err) throw err;
    return import(spec);
  };
}

describe('backend resolution', () => {
  it('falls back from missing native packages to wasm and says why', async () => {
    const b = await loadBackend({
      choice: 'auto',
      importModule: importer({ '@tensorflow/tfjs-node-gpu': notFound('@tensorflow/tfjs-node-gpu'), '@tensorflow/tfjs-node': notFound('@tensorflow/tfjs-node') }),
    });
    expect(b.info.name).toBe('wasm');
    expect(b.tf.getBackend()).toBe('wasm');
    expect(b.info.label).toMatch(/^wasm \((simd|no simd), \d+ threads?\)$/);
    const native = b.info.attempts.filter((a) => a.backend === 'tensorflow');
    expect(native.map((a) => a.package)).toEqual(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']);
    expect(native.every((a) => !a.ok && /not installed/.test(a.reason ?? ''))).toBe(true);
  });

  it('skips a native package whose binary fails to load, naming the missing library', async () => {
    const dlopen = new Error('libtensorflow.so.2: cannot open shared object file: No such file or directory');
    const b = await loadBackend({
      choice: 'auto',
      importModule: importer({ '@tensorflow/tfjs-node-gpu': dlopen, '@tensorflow/tfjs-node': notFound('@tensorflow/tfjs-node') }),
    });
    expect(b.info.name).toBe('wasm');
    expect(b.info.attempts[0]?.reason).toContain('libtensorflow.so.2');
    expect(b.info.attempts[0]?.reason).toContain('installed but cannot load');
  });

  it('falls back to cpu when wasm cannot initialise', async () => {
    const b = await loadBackend({
      choice: 'auto',
      importModule: importer({
        '@tensorflow/tfjs-node-gpu': notFound('@tensorflow/tfjs-node-gpu'),
        '@tensorflow/tfjs-node': notFound('@tensorflow/tfjs-node'),
        '@tensorflow/tfjs-backend-wasm': new Error('WebAssembly.instantiate(): out of memory'),
      }),
    });
    expect(b.info.name).toBe('cpu');
    expect(b.info.attempts.find((a) => a.backend === 'wasm')?.reason).toContain('out of memory');
  });

  it('an explicit backend that cannot load is an error that says why', async () => {
    const err = await loadBackend({ choice: 'tensorflow', importModule: importer({ '@tensorflow/tfjs-node-gpu': notFound('@tensorflow/tfjs-node-gpu'), '@tensorflow/tfjs-node': notFound('@tensorflow/tfjs-node') }) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).message).toMatch(/tensorflow.*cannot load.*tfjs-node-gpu is not installed/);
  });

  it('explicit cpu does not try the others', async () => {
    const b = await loadBackend({ choice: 'cpu', importModule: importer({}) });
    expect(b.info.name).toBe('cpu');
    expect(b.info.attempts.map((a) => a.backend)).toEqual(['cpu']);
  });

  it('reads TL_BACKEND and rejects unknown names', () => {
    expect(backendChoiceFromEnv({})).toBe('auto');
    expect(backendChoiceFromEnv({ TL_BACKEND: 'cpu' })).toBe('cpu');
    expect(() => backendChoiceFromEnv({ TL_BACKEND: 'cuda' })).toThrow(/TL_BACKEND=cuda is not a backend/);
  });

  it('explains a missing native binding', () => {
    const e = new Error("Cannot find module '/n/node_modules/@tensorflow/tfjs-node-gpu/lib/napi-v8/tfjs_binding.node'");
    expect(explainNativeFailure('@tensorflow/tfjs-node-gpu', e)).toMatch(/native binding is missing/);
  });
});
