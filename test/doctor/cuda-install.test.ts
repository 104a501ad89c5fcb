// `tl doctor --add-cuda` runs onnxruntime-node's own CUDA installer for the installed package and reports its failure
// in one line: here through a proxy on a closed local port, so no request leaves the machine and nothing is written.
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { addCudaProvider, installerReason, missingProviderFiles } from '../../src/onnx/cuda-install.js';
import { EnvironmentError } from '../../src/errors.js';

const linuxX64 = process.platform === 'linux' && process.arch === 'x64';

describe('adding the CUDA provider', () => {
  it.runIf(linuxX64)("reaches onnxruntime-node's download, says why it failed, and leaves its binaries as they were", async () => {
    const folder = join(dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json')), 'bin', 'napi-v6', 'linux', 'x64');
    const before = readdirSync(folder).sort();
    expect(missingProviderFiles(folder).length).toBeGreaterThan(0);
    const progress: string[] = [];
    const env = { ...process.env, GLOBAL_AGENT_HTTPS_PROXY: 'http://127.0.0.1:9', GLOBAL_AGENT_HTTP_PROXY: 'http://127.0.0.1:9', ONNXRUNTIME_NODE_INSTALL: 'skip' };
    const err = await addCudaProvider((t) => progress.push(t), env).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EnvironmentError);
    // ONNXRUNTIME_NODE_INSTALL=skip in the caller's environment must not turn the request into a silent no-op.
    expect((err as EnvironmentError).message).toBe("Could not add the CUDA provider: onnxruntime-node's installer could not download it (Error: connect ECONNREFUSED 127.0.0.1:9).");
    expect((err as EnvironmentError).suggestion).toMatch(/NuGet \(api\.nuget\.org, package Microsoft\.ML\.OnnxRuntime\.Gpu\.Linux\)/);
    expect(readdirSync(folder).sort()).toEqual(before);
  });

  it("takes the installer's error line, not Node's stack or source excerpt", () => {
    const stderr = [
      'node:internal/process/promises:391',
      '    triggerUncaughtException(err, true /* fromPromise */);',
      '    ^',
      '',
      'Error: getaddrinfo ENOTFOUND api.nuget.org',
      '    at GetAddrInfoReqWrap.onlookupall [as oncomplete] (node:dns:122:26) {',
      "  errno: -3008,",
      '}',
      '',
      'Node.js v20.20.2',
    ].join('\n');
    expect(installerReason(stderr)).toBe('Error: getaddrinfo ENOTFOUND api.nuget.org');
    expect(installerReason("Error [ERR_MODULE_NOT_FOUND]: Cannot find module 'global-agent'\n    at x")).toBe("Error [ERR_MODULE_NOT_FOUND]: Cannot find module 'global-agent'");
  });
});
