// `tl doctor --add-cuda`: runs onnxruntime-node's own installer for its CUDA 12 provider in the installation tl runs
// from (global, npx or a project), then checks what it left.
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { EnvironmentError } from '../errors.js';
import { cudaProvider, probeProvider } from './runtime.js';

/** The files onnxruntime-node 1.30's installer puts beside its binding for the CUDA 12 provider (linux/x64). */
export const CUDA_PROVIDER_FILES = ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so', 'libonnxruntime_providers_tensorrt.so'] as const;

export interface CudaInstallResult {
  /** The folder the provider libraries are in. */
  folder: string;
  /** Whether the installer downloaded them now (false: they were there already). */
  downloaded: boolean;
  /** Null when a CUDA session ran here; otherwise why it did not (no driver, a library that does not load). */
  unusable: string | null;
}

function ortRoot(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  } catch (err) {
    throw new EnvironmentError('onnxruntime-node is not installed, so there is no ONNX Runtime to add the CUDA provider to.', { cause: err, suggestion: 'Reinstall tl (see the README).' });
  }
}

/** The provider files missing or empty in `folder`. */
export function missingProviderFiles(folder: string): string[] {
  return CUDA_PROVIDER_FILES.filter((f) => {
    const path = join(folder, f);
    return !existsSync(path) || statSync(path).size === 0;
  });
}

/** The installer's own error line (its uncaught error's first line), without Node's stack. */
export function installerReason(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim());
  const error = lines.find((l) => /^(\w*Error|Error \[\w+\]):/.test(l));
  return (error ?? lines.filter(Boolean).pop() ?? 'no output').slice(0, 300);
}

/** Why the installer failed, in the user's terms. */
function explain(reason: string, folder: string): { message: string; suggestion: string } {
  if (/ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|ECONNRESET|ENETUNREACH|socket hang up|certificate/i.test(reason)) {
    return {
      message: `Could not add the CUDA provider: onnxruntime-node's installer could not download it (${reason}).`,
      suggestion: 'It comes from NuGet (api.nuget.org, package Microsoft.ML.OnnxRuntime.Gpu.Linux) over HTTPS; run this where that host is reachable, or through a proxy (GLOBAL_AGENT_HTTPS_PROXY).',
    };
  }
  if (/EACCES|EPERM|EROFS/.test(reason)) {
    return {
      message: `Could not add the CUDA provider: ${folder} is not writable (${reason}).`,
      suggestion: 'Run it as the user who installed tl (for a system-wide `npm install -g`, with sudo).',
    };
  }
  return { message: `Could not add the CUDA provider: onnxruntime-node's installer failed (${reason}).`, suggestion: 'Run it again with the output above at hand; see the README.' };
}

/**
 * Adds onnxruntime-node's CUDA 12 provider to the installed package (its installer with `--onnxruntime-node-install=cuda12`,
 * the same as `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` there), then checks the files and, with an
 * NVIDIA driver loaded, runs a session on CUDA. `write` gets the installer's progress lines.
 */
export async function addCudaProvider(write: (text: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<CudaInstallResult> {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new EnvironmentError(`onnxruntime-node 1.30 has a CUDA provider to add only on Linux x64; this is ${process.platform}-${process.arch}.`, { suggestion: 'Use the CPU (the default) or --device webgpu.' });
  }
  const root = ortRoot();
  const folder = join(root, 'bin', 'napi-v6', 'linux', 'x64');
  const before = missingProviderFiles(folder);
  if (before.length === 0) return { folder, downloaded: false, unusable: await usability() };
  const script = join(root, 'script', 'install.js');
  if (!existsSync(script)) throw new EnvironmentError(`${script} is missing: this onnxruntime-node has no installer to fetch the CUDA provider with.`, { suggestion: 'Reinstall tl (see the README).' });
  // The installer reads its flag from the environment before its argv, and exits at once, as if done, when it sees
  // npm's variables of a project whose root holds package.json (as under `npx tl` or `npm run`): it gets neither.
  const childEnv = Object.fromEntries(Object.entries(env).filter(([k]) => !/^(npm_|ONNXRUNTIME_NODE_INSTALL)/i.test(k)));
  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [script, '--onnxruntime-node-install=cuda12'], { cwd: root, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stdout.on('data', (d: Buffer) => write(d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('error', reject);
    child.on('close', (c) => resolve({ code: c, stderr: err }));
  });
  const after = missingProviderFiles(folder);
  if (code !== 0 || after.length > 0) {
    const reason = code !== 0 ? installerReason(stderr) : `it ended without ${after.join(', ')}`;
    const { message, suggestion } = explain(reason, folder);
    throw new EnvironmentError(message, { suggestion });
  }
  return { folder, downloaded: true, unusable: await usability() };
}

async function usability(): Promise<string | null> {
  if (!cudaProvider().usable) return 'no NVIDIA driver is loaded (/proc/driver/nvidia/version is missing), so tl runs on the CPU here';
  return probeProvider('cuda');
}
