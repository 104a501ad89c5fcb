// Terminal rendering of metrics: the headline and the per-class table.
import Table from 'cli-table3';
import type { Metrics } from '../metrics/classification.js';
import type { MultiLabelMetrics } from '../metrics/multilabel.js';
import { headline, MULTI_LABEL_HEAD, multiLabelHeadline, multiLabelRows } from '../report/headline.js';
import type { Io } from './io.js';

/** Prints the headline numbers on one line and the per-class table. */
export function printMetrics(io: Io, m: Metrics): void {
  io.out(`${headline(m).map(([k, v]) => `${k} ${v}`).join(' · ')}\n`);
  const table = new Table({ head: ['class', 'precision', 'recall', 'F1', 'support'], style: { head: [], border: [] }, colAligns: ['left', 'right', 'right', 'right', 'right'] });
  for (const c of m.perClass) table.push([c.name, c.precision.toFixed(3), c.recall.toFixed(3), c.f1.toFixed(3), c.support]);
  table.push(['macro', m.macro.precision.toFixed(3), m.macro.recall.toFixed(3), m.macro.f1.toFixed(3), m.count]);
  table.push(['weighted', m.weighted.precision.toFixed(3), m.weighted.recall.toFixed(3), m.weighted.f1.toFixed(3), m.count]);
  io.out(`${table.toString()}\n`);
}

/** Several labels per image: the headline numbers on one line and the per-label table (with each label's threshold). */
export function printMultiLabel(io: Io, m: MultiLabelMetrics): void {
  io.out(`${multiLabelHeadline(m).map(([k, v]) => `${k} ${v}`).join(' · ')}\n`);
  const table = new Table({ head: MULTI_LABEL_HEAD, style: { head: [], border: [] }, colAligns: ['left', 'right', 'right', 'right', 'right', 'right', 'right'] });
  for (const row of multiLabelRows(m)) table.push(row);
  io.out(`${table.toString()}\n`);
}
