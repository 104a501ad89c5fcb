// `tl models import FILE`: a Keras weight file obtained elsewhere (offline machines, mirrors) placed in the store after
// the checks a download gets: HDF5, within the size bound, the published hash where Keras publishes one, and weights
// that fit the model layer for layer. Copied atomically, with its sha256 recorded.
import { copyFile, mkdir, open, rename, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Tf } from '../backend/index.js';
import { UsageError, WeightsError } from '../errors.js';
import { buildVariant, FAMILIES, resolveVariant, type Variant, type WeightSource } from '../registry/index.js';
import { hashAlgorithm, hashFile, recordStored } from '../store/verified.js';
import { tempPathFor, trackTemp, untrackTemp } from '../util/atomic.js';
import { readKerasH5 } from './h5.js';
import { kerasStorePath } from '../store/paths.js';
import { assignKerasFile, maxKerasBytes } from './keras.js';

type KerasSource = WeightSource & { kind: 'keras-h5' };

const HDF5_MAGIC = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface ImportResult {
  model: string;
  file: string;
  storedAt: string;
  includeTop: boolean;
  /** How the file was checked: the published hash, or a recorded sha256 where Keras publishes none. */
  verified: 'published md5' | 'published sha256' | 'recorded sha256';
  sha256: string;
  bytes: number;
}

/** The registry sources a file could be: by its file name, or every Keras source of `model`. */
/** Every registry model's Keras weight files. */
const kerasSources = () => FAMILIES.flatMap((f) => f.variants.flatMap((variant) => variant.weights.filter((w): w is KerasSource => w.kind === 'keras-h5').map((source) => ({ variant, source }))));

/** Whether `file` has the name Keras publishes one of the registry's weight files under. */
const publishedName = (file: string) => kerasSources().some((c) => basename(new URL(c.source.url).pathname) === basename(file));

function candidates(file: string, model: string | undefined): { variant: Variant; source: KerasSource }[] {
  const all = kerasSources();
  const named = all.filter((c) => basename(new URL(c.source.url).pathname) === basename(file));
  if (model !== undefined) {
    const { variant } = resolveVariant(model);
    const mine = all.filter((c) => c.variant.name === variant.name);
    if (mine.length === 0) throw new UsageError(`${variant.name} has no Keras weight file to import (its weights come from ${variant.weights[0]?.kind ?? 'nowhere'}).`);
    const byName = mine.filter((c) => named.includes(c));
    return byName.length > 0 ? byName : mine;
  }
  if (named.length === 0) {
    throw new UsageError(`${file}: neither its file name (not one Keras publishes) nor its config (if any) names a registry model, so tl cannot tell which model it is for.`, { suggestion: 'Pass --model NAME (see `tl models`).' });
  }
  return named;
}

/** Refuses, in one line, a path that is not an HDF5 file (h5wasm would print pages of diagnostics). */
export async function requireHdf5(file: string): Promise<void> {
  const info = await stat(file).catch(() => null);
  if (info === null) throw new UsageError(`${file} does not exist.`);
  if (!info.isFile()) throw new UsageError(`${file} is not a file.`);
  const head = Buffer.alloc(64);
  const fd = await open(file, 'r');
  try {
    await fd.read(head, 0, 64, 0);
  } finally {
    await fd.close();
  }
  if (!head.subarray(0, 8).equals(HDF5_MAGIC)) throw new WeightsError(`${file} is not an HDF5 file (it starts with ${JSON.stringify(head.subarray(0, 8).toString('latin1').replace(/[^\x20-\x7e]/g, '.'))}); Keras weight files are .h5 (HDF5).`);
  // The superblock says where the file ends: a shorter file was cut off (HDF5 would print pages of diagnostics).
  const end = hdf5EndOfFile(head);
  if (end !== null && end > info.size) throw new WeightsError(`${file} is truncated: ${info.size} bytes, and its HDF5 superblock says ${end}.`, { suggestion: 'Download or copy the file again.' });
}

/** The end-of-file address in an HDF5 superblock at offset 0 (format versions 0-3), or null when it cannot be read. */
function hdf5EndOfFile(head: Buffer): number | null {
  const version = head[8]!;
  const sizeOfOffsets = version <= 1 ? head[13]! : head[9]!;
  if (version > 3 || ![4, 8].includes(sizeOfOffsets)) return null;
  // v0/v1: base, free-space and end-of-file addresses follow 24 (v1: 28) bytes; v2/v3: base, extension, end of file after 12.
  const base = version === 0 ? 24 : version === 1 ? 28 : 12;
  const at = (i: number) => (sizeOfOffsets === 8 ? Number(head.readBigUInt64LE(base + i * 8)) : head.readUInt32LE(base + i * 4));
  return at(0) + at(2);
}

/**
 * The registry model a Keras file is for: by the file name Keras publishes it under, or by the model name a full-model
 * file's config gives (Keras applications name their models `resnet50`, `mobilenetv2_1.00_224`, ...); null if neither.
 */
export function registryModelOf(file: string, modelConfig: unknown): string | null {
  const byFile = FAMILIES.flatMap((f) => f.variants).find((v) => v.weights.some((w) => w.kind === 'keras-h5' && basename(new URL(w.url).pathname) === basename(file)));
  if (byFile) return byFile.name;
  const name = (modelConfig as { config?: { name?: unknown } } | null)?.config?.name;
  if (typeof name !== 'string') return null;
  const alphaName = (base: string, alpha: number) => (alpha === 1 ? base : `${base}_${String(Math.round(alpha * 100)).padStart(3, '0')}`);
  let m: RegExpMatchArray | null;
  if ((m = name.match(/^mobilenetv2_(\d\.\d+)_\d+$/))) return alphaName('mobilenet_v2', Number(m[1]));
  if ((m = name.match(/^mobilenet_(\d\.\d+)_\d+$/))) return Number(m[1]) === 1 ? 'mobilenet' : `mobilenet_${String(Math.round(Number(m[1]) * 100)).padStart(3, '0')}`;
  const fixed: Record<string, string> = { MobilenetV3small: 'mobilenet_v3_small', MobilenetV3large: 'mobilenet_v3_large', inception_v3: 'inception_v3' };
  const candidate = fixed[name] ?? name;
  return FAMILIES.some((f) => f.variants.some((v) => v.name === candidate)) ? candidate : null;
}

/** Checks a Keras weight file and copies it into the store where `tl finetune --model NAME` looks for it. */
export async function importWeights(tf: Tf, file: string, options: { model?: string; store: string }): Promise<ImportResult> {
  await requireHdf5(file);
  const info = await stat(file);
  const sha256 = await hashFile(file, 'sha256');
  // md5 only for a model whose published hash is one (reading the file again).
  let md5: string | null = null;
  const h5 = await readKerasH5(file, { select: () => false });
  const hasTop = [...h5.shapes.keys()].some((l) => l === 'predictions' || l === 'Predictions' || l === 'fc1000');
  let reasons: string[] = [];
  // Without --model: the file's name as Keras publishes it, else the application its config names (`model.save`).
  const all = candidates(file, options.model ?? (publishedName(file) ? undefined : (registryModelOf(file, h5.modelConfig) ?? undefined)));
  const matching = all.filter((c) => c.source.includeTop === hasTop);
  for (const { variant, source } of matching.length > 0 ? matching : all) {
    const model = buildVariant(tf, variant.name, { includeTop: source.includeTop, ...(source.inputSize ? { inputSize: source.inputSize } : {}) });
    try {
      const limit = maxKerasBytes(model, source, variant.family);
      if (info.size > limit) throw new WeightsError(`${file} is ${info.size} bytes; ${variant.name}'s weights ${source.includeTop ? 'with' : 'without'} top take at most ${limit}.`);
      if (source.hash !== null) {
        const got = hashAlgorithm(source.hash) === 'md5' ? (md5 ??= await hashFile(file, 'md5')) : sha256;
        if (got !== source.hash.toLowerCase()) {
          throw new WeightsError(`${file}'s ${hashAlgorithm(source.hash)} is ${got}; Keras publishes ${source.hash} for ${basename(new URL(source.url).pathname)} (${variant.name}): it is another file or a damaged copy.`);
        }
      }
      // Every weight must fit the model by layer name and shape (a wrong but valid HDF5 file fails here).
      await assignKerasFile(tf, model, file);
      const dest = kerasStorePath(options.store, source.url);
      await mkdir(dirname(dest), { recursive: true });
      const tmp = tempPathFor(dest);
      trackTemp(tmp);
      try {
        await copyFile(file, tmp);
        if ((await hashFile(tmp, 'sha256')) !== sha256) throw new WeightsError(`${file} changed while it was copied into the store; run the import again.`);
        await rename(tmp, dest);
      } finally {
        untrackTemp(tmp);
      }
      await recordStored(dest, sha256);
      return {
        model: variant.name,
        file,
        storedAt: dest,
        includeTop: source.includeTop,
        verified: source.hash === null ? 'recorded sha256' : hashAlgorithm(source.hash) === 'md5' ? 'published md5' : 'published sha256',
        sha256,
        bytes: info.size,
      };
    } catch (err) {
      if (!(err instanceof WeightsError)) throw err;
      reasons = [...reasons, err.message];
    } finally {
      model.dispose();
    }
  }
  throw new WeightsError(reasons.length === 1 ? reasons[0]! : `${file} fits none of the candidate weight files: ${reasons.join(' ')}`);
}
