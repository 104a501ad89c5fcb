// Writes a run's or an evaluation's reports (json, md, html) atomically, after validating against the schema.
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { renderHtml, renderMarkdown, type HtmlExtras } from './render.js';
import { reportSchema, type Report } from './schema.js';

export { headline } from './headline.js';
export * from './schema.js';

/** Validates `report` (a bug, not bad input, if it fails) and writes report.json, report.md and report.html. */
export async function writeReports(dir: string, report: Report, extras: HtmlExtras = {}): Promise<string[]> {
  const valid = reportSchema.parse(report);
  const files = [join(dir, 'report.json'), join(dir, 'report.md'), join(dir, 'report.html')];
  const html = await renderHtml(valid, extras);
  await writeFileAtomic(files[0]!, `${JSON.stringify(valid, null, 2)}\n`);
  await writeFileAtomic(files[1]!, renderMarkdown(valid));
  await writeFileAtomic(files[2]!, html);
  return files;
}
