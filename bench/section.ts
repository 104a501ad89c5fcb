// One section of BENCHMARKS.md written in place, with the machine and the date it was measured on.
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { writeFileAtomic } from '../src/util/atomic.js';

export interface Section {
  title: string;
  lines: string[];
}

const log = (s: string) => process.stderr.write(`${s}\n`);

/** The CPU's vector extensions that matter to these kernels, from /proc/cpuinfo (Linux). */
export function vectorExtensions(): string {
  const flags = existsSync('/proc/cpuinfo') ? (/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/) : [];
  const wanted = flags.filter((f) => /^(avx|avx2|fma|avx512\w*|avx_vnni|amx\w*|f16c)$/.test(f)).sort();
  return wanted.length > 0 ? wanted.join(', ') : 'unknown';
}

/** Writes one section into BENCHMARKS.md in place of its previous run, with its own date and machine. */
export async function writeSection(out: string, section: Section, command: string, cores: number, measuredOn?: string): Promise<void> {
  const measured = measuredOn ?? `Measured by \`${command}\` on ${new Date().toISOString().slice(0, 10)}: ${cpus()[0]?.model ?? 'unknown CPU'} (${vectorExtensions()}), ${cores} cores, Node ${process.version}.`;
  const text = [`## ${section.title}`, '', measured, '', ...section.lines, ''].join('\n');
  const current = existsSync(out) ? readFileSync(out, 'utf8') : '# Benchmarks\n';
  const start = current.indexOf(`## ${section.title}`);
  const next = start < 0 ? -1 : current.indexOf('\n## ', start + 3);
  const merged = start < 0 ? `${current.trimEnd()}\n\n${text}` : `${current.slice(0, start)}${text}${next < 0 ? '' : current.slice(next)}`;
  await writeFileAtomic(out, merged);
  log(`wrote the section "${section.title}" of ${out}`);
}

