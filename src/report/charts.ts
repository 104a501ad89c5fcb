// The report's charts as Vega-Lite specs, rendered to static SVG in Node (no browser, no script in the report).
import type { FreezeAutoRecord, ReportMetrics, ReportMultiLabel } from './schema.js';

type Spec = Record<string, unknown>;

const base = { $schema: 'https://vega.github.io/schema/vega-lite/v5.json', config: { font: 'sans-serif', view: { stroke: null }, axis: { labelFontSize: 11, titleFontSize: 12 } } };

export interface EpochPoint {
  epoch: number;
  loss: number;
  accuracy: number;
  val_loss: number | null;
  val_accuracy: number | null;
}

/** Train and validation curves of one metric per epoch. */
export function learningCurveSpec(history: EpochPoint[], metric: 'loss' | 'accuracy'): Spec {
  const values = history.flatMap((r) => [
    { epoch: r.epoch, split: 'train', value: r[metric] },
    ...(r[`val_${metric}`] === null ? [] : [{ epoch: r.epoch, split: 'validation', value: r[`val_${metric}`] }]),
  ]);
  return {
    ...base,
    title: metric === 'loss' ? 'Loss' : 'Accuracy',
    width: 360,
    height: 220,
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'epoch', type: 'quantitative', axis: { format: 'd', ...(history.length <= 20 ? { values: history.map((r) => r.epoch) } : { tickMinStep: 1 }) } },
      y: { field: 'value', type: 'quantitative', title: metric, ...(metric === 'accuracy' ? { scale: { domain: [0, 1] } } : {}) },
      color: { field: 'split', type: 'nominal', title: null, scale: { domain: ['train', 'validation'], range: ['#4c78a8', '#f58518'] } },
    },
  };
}

/** Confusion matrix as a heat map with counts (rows: true class; columns: predicted). */
export function confusionSpec(metrics: ReportMetrics): Spec {
  const names = metrics.perClass.map((c) => c.name);
  const values = metrics.confusion.flatMap((row, t) => row.map((count, p) => ({ true: names[t], predicted: names[p], count, share: metrics.perClass[t]!.support ? count / metrics.perClass[t]!.support : 0 })));
  const cell = Math.max(18, Math.min(48, Math.floor(480 / Math.max(1, names.length))));
  return {
    ...base,
    title: 'Confusion matrix',
    width: cell * names.length,
    height: cell * names.length,
    data: { values },
    encoding: {
      x: { field: 'predicted', type: 'nominal', sort: names, title: 'predicted', axis: { labelAngle: -45 } },
      y: { field: 'true', type: 'nominal', sort: names, title: 'true' },
    },
    layer: [
      { mark: 'rect', encoding: { color: { field: 'share', type: 'quantitative', title: 'row share', scale: { scheme: 'blues', domain: [0, 1] } } } },
      ...(names.length <= 20 ? [{ mark: { type: 'text', fontSize: 10 }, encoding: { text: { field: 'count', type: 'quantitative' }, color: { condition: { test: 'datum.share > 0.5', value: 'white' }, value: 'black' } } }] : []),
    ],
  };
}

/** F1 per class as horizontal bars. */
export function f1Spec(metrics: ReportMetrics): Spec {
  return {
    ...base,
    title: 'F1 per class',
    width: 360,
    height: Math.max(60, 18 * metrics.perClass.length),
    data: { values: metrics.perClass.map((c) => ({ class: c.name, f1: c.f1, support: c.support })) },
    mark: 'bar',
    encoding: {
      y: { field: 'class', type: 'nominal', sort: null, title: null },
      x: { field: 'f1', type: 'quantitative', scale: { domain: [0, 1] }, title: 'F1' },
      tooltip: [{ field: 'class' }, { field: 'f1', format: '.3f' }, { field: 'support' }],
    },
  };
}

/** Several labels per image: F1 and average precision of each label, side by side. */
export function labelBarsSpec(m: ReportMultiLabel): Spec {
  const values = m.labels.flatMap((l) => [{ label: l.name, metric: 'F1', value: l.f1, support: l.support }, ...(l.ap === null ? [] : [{ label: l.name, metric: 'AP', value: l.ap, support: l.support }])]);
  return {
    ...base,
    title: 'F1 and average precision per label',
    width: 360,
    height: Math.max(60, 24 * m.labels.length),
    data: { values },
    mark: 'bar',
    encoding: {
      y: { field: 'label', type: 'nominal', sort: null, title: null },
      yOffset: { field: 'metric', type: 'nominal' },
      color: { field: 'metric', type: 'nominal', title: null },
      x: { field: 'value', type: 'quantitative', scale: { domain: [0, 1] }, title: null },
      tooltip: [{ field: 'label' }, { field: 'metric' }, { field: 'value', format: '.3f' }, { field: 'support' }],
    },
  };
}

/** Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration. */
export function reliabilitySpec(metrics: ReportMetrics): Spec {
  const bins = metrics.reliability.filter((b) => b.count > 0).map((b) => ({ lower: b.lower, upper: b.upper, accuracy: b.accuracy, confidence: b.confidence, count: b.count }));
  return {
    ...base,
    title: `Reliability (ECE ${metrics.ece.toFixed(3)})`,
    width: 300,
    height: 300,
    layer: [
      {
        data: { values: bins },
        mark: { type: 'rect', opacity: 0.8, color: '#4c78a8' },
        encoding: {
          x: { field: 'lower', type: 'quantitative', scale: { domain: [0, 1] }, title: 'confidence (top-1 probability)' },
          x2: { field: 'upper' },
          y: { field: 'accuracy', type: 'quantitative', scale: { domain: [0, 1] }, title: 'accuracy' },
          y2: { datum: 0 },
        },
      },
      { data: { values: [{ x: 0, y: 0 }, { x: 1, y: 1 }] }, mark: { type: 'line', strokeDash: [4, 4], color: '#888' }, encoding: { x: { field: 'x', type: 'quantitative' }, y: { field: 'y', type: 'quantitative' } } },
    ],
  };
}

/** `--freeze auto`: LogME of the pooled features at each block boundary, the probed depths' validation accuracy, the choice. */
export function freezeDepthSpec(r: FreezeAutoRecord): Spec {
  const x = { field: 'freeze', type: 'quantitative', title: 'layers frozen (--freeze)', scale: { domain: [Math.min(...r.depths.map((d) => d.freeze)), Math.max(...r.depths.map((d) => d.freeze))] } };
  const chosen = { data: { values: [{ freeze: r.chosen }] }, mark: { type: 'rule', color: '#e45756', strokeDash: [4, 4] }, encoding: { x: { field: 'freeze', type: 'quantitative' } } };
  return {
    ...base,
    title: `Freeze depth (chosen: ${r.chosen})`,
    vconcat: [
      { width: 420, height: 160, layer: [{ data: { values: r.depths }, mark: { type: 'line', point: true }, encoding: { x, y: { field: 'logme', type: 'quantitative', title: 'LogME', scale: { zero: false } }, tooltip: [{ field: 'layer' }] } }, chosen] },
      { width: 420, height: 100, layer: [{ data: { values: r.depths.filter((d) => d.probe).map((d) => ({ freeze: d.freeze, accuracy: d.probe!.valAccuracy })) }, mark: { type: 'point', filled: true, size: 60 }, encoding: { x, y: { field: 'accuracy', type: 'quantitative', title: `val acc (${r.probeEpochs} epochs)`, scale: { zero: false } } } }, chosen] },
    ],
  };
}

/** Renders a Vega-Lite spec to an SVG string. */
export async function renderSvg(spec: Spec): Promise<string> {
  const [vega, vl] = await Promise.all([import('vega'), import('vega-lite')]);
  const compiled = vl.compile(spec as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
