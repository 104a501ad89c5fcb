// `tl doctor`: what runs here and why.
import { Command } from 'commander';
import Table from 'cli-table3';
import { z } from 'zod';
import { addCommonOptions, backendSchema, commonSchema, formatBytes, parseOptions, printJson } from './common.js';
import type { Io } from './io.js';

export function doctorCommand(io: Io): Command {
  const cmd = new Command('doctor').description('report backends, GPU libraries, wasm features and the model store');
  addCommonOptions(cmd, { backend: true });
  cmd.option('--add-cuda', "add onnxruntime-node's CUDA 12 provider to this installation (downloaded from NuGet), then check it");
  cmd.action(async (raw: unknown) => {
    const opts = parseOptions(commonSchema.extend({ backend: backendSchema.optional(), addCuda: z.boolean().optional() }), raw);
    if (opts.addCuda) {
      const { addCudaProvider } = await import('../onnx/cuda-install.js');
      const result = await addCudaProvider((text) => io.err(text), io.env);
      io.out(`CUDA provider: ${result.downloaded ? 'installed' : 'already installed'} in ${result.folder}\n`);
      io.out(result.unusable === null ? 'cuda: usable (a session ran on CUDA); --device auto now picks it\n' : `cuda: not usable here: ${result.unusable}\n`);
      return;
    }
    const { runDoctor } = await import('../doctor/index.js');
    const { backendChoiceFromEnv } = await import('../backend/index.js');
    const report = await runDoctor({ env: io.env, choice: opts.backend ?? backendChoiceFromEnv(io.env) });
    if (opts.json) return printJson(io, report);

    const facts = new Table({ style: { head: [], border: [] }, wordWrap: true, colWidths: [22, 90] });
    facts.push(
      { tl: report.tl },
      { node: `${report.node} (${report.platform})` },
      { tfjs: report.tfjs['tfjs-core'] ?? '?' },
      { 'active backend': report.active.label },
      { 'wasm': report.wasm.simd === null ? report.wasm.note : `${report.wasm.simd ? 'SIMD' : 'no SIMD'}, ${report.wasm.threads} thread(s): ${report.wasm.note}` },
      { 'ONNX Runtime': report.onnx.available ? `onnxruntime-node ${report.onnx.version}, ${report.onnx.threads} intra-op threads, execution providers: ${report.onnx.providers.join('; ')}` : `not available: ${report.onnx.reason}` },
      { 'GPU (tfjs-node-gpu)': report.gpu.usable ? `usable: ${report.gpu.reason}` : `not usable: ${report.gpu.reason}` },
      { 'model store': `${report.store.path}${report.store.exists ? '' : ' (not created yet)'}${report.store.freeBytes === null ? '' : `, ${formatBytes(report.store.freeBytes)} free`}` },
    );
    io.out(`${facts.toString()}\n`);

    const backends = new Table({ head: ['backend', 'package', 'status'], style: { head: [], border: [] }, wordWrap: true, colWidths: [12, 32, 70] });
    for (const b of report.backends) backends.push([b.backend, b.package, b.ok ? 'loads' : `no: ${b.reason ?? ''}`]);
    io.out(`${backends.toString()}\n`);
  });
  return cmd;
}
