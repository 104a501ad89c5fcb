import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findLibrary, gpuReport } from '../../src/doctor/index.js';
import { tempDir } from '../helpers/tmp.js';

describe('GPU readiness for tfjs-node-gpu', () => {
  it('finds CUDA 11.2 and cuDNN 8 by exact soname, in the loader cache or on LD_LIBRARY_PATH', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'libcudart.so.11.0'), '');
    writeFileSync(join(dir, 'libcudnn.so.8'), '');
    writeFileSync(join(dir, 'libcudart.so.12'), '');
    expect(findLibrary('libcudart.so.11.0', '', { LD_LIBRARY_PATH: dir })).toBe(join(dir, 'libcudart.so.11.0'));
    const ldconfig = '\tlibcudnn.so.8 (libc6,x86-64) => /opt/cudnn/lib/libcudnn.so.8\n\tlibcudart.so.12 (libc6,x86-64) => /usr/lib/libcudart.so.12\n';
    expect(findLibrary('libcudnn.so.8', ldconfig, {})).toBe('/opt/cudnn/lib/libcudnn.so.8');
    // CUDA 12's runtime is not the CUDA 11 one tfjs-node-gpu links against (unless this machine has CUDA 11 itself).
    const systemCuda11 = ['/usr/local/cuda/lib64', '/usr/local/cuda-11.2/lib64', '/usr/lib/x86_64-linux-gnu', '/usr/lib64'].some((d) => existsSync(join(d, 'libcudart.so.11.0')));
    if (!systemCuda11) expect(findLibrary('libcudart.so.11.0', ldconfig, { LD_LIBRARY_PATH: tempDir() })).toBeNull();
    const report = await gpuReport({ LD_LIBRARY_PATH: dir });
    expect(report.libcudart).toBe(join(dir, 'libcudart.so.11.0'));
    expect(report.libcudnn).toBe(join(dir, 'libcudnn.so.8'));
    if (report.nvidiaDriver === null) {
      expect(report.usable).toBe(false);
      expect(report.reason).toMatch(/no NVIDIA driver/);
      expect(report.reason).not.toMatch(/libcudart|libcudnn/);
    }
  });
});
