// numpy's .npy format 1.0 for float32 arrays: the header tl writes, and a reader that checks a file before any of its
// bytes are trusted (magic, version, dtype, order, shape, and a body exactly as long as the shape says).
import { DatasetError } from '../errors.js';

/** Fixed header size, so the row count can be filled in at the end (multiple of 64, as numpy aligns). */
export const NPY_HEADER_BYTES = 128;

/** The .npy header tl writes for a float32 array of `shape`. */
export function npyHeader(shape: number[]): Buffer {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const body = NPY_HEADER_BYTES - 10;
  if (dict.length + 1 > body) throw new Error(`npy header too long for shape (${shape.join(', ')})`);
  const header = Buffer.alloc(NPY_HEADER_BYTES, 0x20);
  header.write('\x93NUMPY', 0, 'latin1');
  header[6] = 1;
  header[7] = 0;
  header.writeUInt16LE(body, 8);
  header.write(dict, 10, 'latin1');
  header[NPY_HEADER_BYTES - 1] = 0x0a;
  return header;
}

export interface NpyArray {
  shape: number[];
  /** The float32 body (a view of the file's bytes). */
  body: Buffer;
  /** Bytes per row (the product of every dimension after the first, times 4). */
  rowBytes: number;
}

/**
 * Parses a float32 .npy file tl wrote (or numpy, little-endian C order) and checks it against what its record says:
 * `rows` and `rowShape` where given. Throws a DatasetError naming `path` and what disagrees.
 */
export function readNpy(bytes: Buffer, path: string, expect: { rows?: number; rowShape?: readonly number[] } = {}): NpyArray {
  if (bytes.length < 10 || bytes.toString('latin1', 0, 6) !== '\x93NUMPY') throw new DatasetError(`${path} is not a .npy file (no NUMPY magic).`);
  const major = bytes[6]!;
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : major === 2 || major === 3 ? (bytes.length >= 12 ? bytes.readUInt32LE(8) : -1) : -1;
  const start = major === 1 ? 10 : 12;
  if (headerLength < 0 || start + headerLength > bytes.length) throw new DatasetError(`${path}: unreadable .npy header (version ${major}, ${bytes.length} bytes).`);
  const dict = bytes.toString('latin1', start, start + headerLength);
  const descr = /'descr':\s*'([^']*)'/.exec(dict)?.[1];
  if (descr !== '<f4') throw new DatasetError(`${path} holds ${descr ?? 'an unknown type'}; tl reads float32 ('<f4') arrays.`);
  if (!/'fortran_order':\s*False/.test(dict)) throw new DatasetError(`${path} is in Fortran order; tl reads C-order arrays.`);
  const dims = /'shape':\s*\(([^)]*)\)/.exec(dict)?.[1]?.split(',').map((v) => v.trim()).filter((v) => v !== '');
  if (!dims || dims.length === 0 || dims.some((d) => !/^\d+$/.test(d))) throw new DatasetError(`${path}: the .npy header has no valid shape.`);
  const shape = dims.map(Number);
  const rowBytes = shape.slice(1).reduce((a, b) => a * b, 1) * 4;
  const want = start + headerLength + shape[0]! * rowBytes;
  if (bytes.length !== want) throw new DatasetError(`${path} is ${bytes.length} bytes; its header's shape (${shape.join(', ')}) needs ${want} (${bytes.length < want ? 'truncated' : 'trailing bytes'}).`);
  if (expect.rows !== undefined && shape[0] !== expect.rows) throw new DatasetError(`${path} holds ${shape[0]} rows; its record lists ${expect.rows}.`);
  if (expect.rowShape !== undefined && shape.slice(1).join(',') !== expect.rowShape.join(',')) throw new DatasetError(`${path} holds rows of shape (${shape.slice(1).join(', ')}); its record says (${expect.rowShape.join(', ')}).`);
  return { shape, body: bytes.subarray(start + headerLength), rowBytes };
}

/** Row `r` of a checked array. */
export const npyRow = (a: NpyArray, r: number): Buffer => a.body.subarray(r * a.rowBytes, (r + 1) * a.rowBytes);
