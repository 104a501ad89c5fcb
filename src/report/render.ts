// report.md (for a pull request) and report.html (one self-contained file: inline SVG charts, inline thumbnails).
import sharp from 'sharp';
import { confusionSpec, f1Spec, freezeDepthSpec, labelBarsSpec, learningCurveSpec, reliabilitySpec, renderSvg } from './charts.js';
import { freezeAutoSchema, type FreezeAutoRecord } from './schema.js';
import { calibrationLine, headline, MULTI_LABEL_HEAD, multiLabelHeadline, multiLabelRows, num } from './headline.js';
import type { Report } from './schema.js';

const mdCell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function title(r: Report): string {
  return r.kind === 'finetune' ? `Fine-tuning ${r.model} on ${r.data}` : `Evaluation of ${r.run} on ${r.data} (${r.split})`;
}

function configEntries(r: Report): [string, string][] {
  const entries: [string, string][] = [['backend', r.backend], ['model', r.model], ['tl', r.tlVersion], ['written', r.createdAt], ['time', `${r.seconds.toFixed(1)} s`]];
  if (r.kind === 'finetune') {
    for (const [k, v] of Object.entries(r.config)) if (!['backend', 'model'].includes(k) && v !== undefined) entries.push([k, typeof v === 'object' ? JSON.stringify(v) : String(v)]);
  } else {
    entries.push(['run', r.run], ['data', r.data], ['split', r.split], ['images per second', r.imagesPerSecond.toFixed(1)]);
  }
  return entries;
}

/** The `--freeze auto` record of a fine-tune's config, when it has a valid one. */
function freezeAutoOf(r: Report): FreezeAutoRecord | null {
  if (r.kind !== 'finetune') return null;
  const parsed = freezeAutoSchema.safeParse(r.config['freezeAuto']);
  return parsed.success ? parsed.data : null;
}

/** One sentence on how the freeze depth and learning rate were chosen, where tl chose them. */
function choices(r: Report): string[] {
  if (r.kind !== 'finetune') return [];
  const out: string[] = [];
  const fa = freezeAutoOf(r);
  if (fa) {
    const c = fa.depths.find((d) => d.freeze === fa.chosen);
    out.push(`Freeze depth chosen from the data (--freeze auto): ${fa.chosen} (after ${c?.layer ?? '?'}), of ${fa.depths.length} block boundaries scored by LogME, the best ${fa.depths.filter((d) => d.probe).length} fine-tuned for ${fa.probeEpochs} epochs each (${fa.seconds.toFixed(0)} s).`);
  }
  const lf = r.config['lrFind'] as { suggestion?: unknown } | undefined;
  if (lf && typeof lf.suggestion === 'number') out.push(`Learning rate from a range test (--lr find): ${lf.suggestion.toExponential(2)} (curve: lr-find.svg).`);
  return out;
}

/** The Markdown summary. */
export function renderMarkdown(r: Report): string {
  const m = r.metrics;
  const lines: string[] = [`# ${title(r)}`, ''];
  if (r.kind === 'finetune') {
    lines.push(`${r.history.length} epochs, ${r.frozenLayers}/${r.totalLayers} backbone layers frozen, ${r.trainableParams.toLocaleString('en')} trainable parameters, backend ${r.backend}.`);
    if (r.best) lines.push(`Saved weights: epoch ${r.best.epoch} (best ${r.best.monitor} ${num(r.best.value)}).`);
    if (r.stopReason) lines.push(`Stopped: ${r.stopReason}.`);
    if (r.calibration) lines.push(calibrationLine(r.calibration));
    lines.push(...choices(r));
    for (const w of r.warnings) lines.push('', `**Warning:** ${w}.`);
    lines.push('');
  }
  const ml = r.multiLabel ?? null;
  if (ml) {
    lines.push('| metric | value |', '| --- | --- |', ...multiLabelHeadline(ml).map(([k, v]) => `| ${k} | ${v} |`), '');
    lines.push('## Per label', '', 'Each label is predicted where its probability is at least its threshold (tuned for F1 on the validation split).', '');
    lines.push(`| ${MULTI_LABEL_HEAD.join(' | ')} |`, `| --- | ${MULTI_LABEL_HEAD.slice(1).map(() => '---:').join(' | ')} |`);
    for (const row of multiLabelRows(ml)) lines.push(`| ${[mdCell(row[0]!), ...row.slice(1)].join(' | ')} |`);
    lines.push('');
  } else if (m) {
    lines.push('| metric | value |', '| --- | --- |', ...headline(m).map(([k, v]) => `| ${k} | ${v} |`), '');
    lines.push('## Per class', '', '| class | precision | recall | F1 | support |', '| --- | ---: | ---: | ---: | ---: |');
    for (const c of m.perClass) lines.push(`| ${mdCell(c.name)} | ${num(c.precision, 3)} | ${num(c.recall, 3)} | ${num(c.f1, 3)} | ${c.support} |`);
    lines.push(`| *macro* | ${num(m.macro.precision, 3)} | ${num(m.macro.recall, 3)} | ${num(m.macro.f1, 3)} | ${m.count} |`);
    lines.push(`| *weighted* | ${num(m.weighted.precision, 3)} | ${num(m.weighted.recall, 3)} | ${num(m.weighted.f1, 3)} | ${m.count} |`, '');
    lines.push('## Confusion matrix', '', 'Rows: true class; columns: predicted.', '');
    lines.push(`| | ${m.perClass.map((c) => mdCell(c.name)).join(' | ')} |`, `| --- | ${m.perClass.map(() => '---:').join(' | ')} |`);
    m.confusion.forEach((row, i) => lines.push(`| **${mdCell(m.perClass[i]!.name)}** | ${row.join(' | ')} |`));
    lines.push('');
    if (m.mistakes.length > 0) {
      lines.push('## Most confident mistakes', '', '| image | true | predicted | probability |', '| --- | --- | --- | ---: |');
      for (const x of m.mistakes) lines.push(`| ${mdCell(x.path)} | ${mdCell(x.true)} | ${mdCell(x.predicted)} | ${x.probability.toFixed(3)} |`);
      lines.push('');
    }
  } else {
    lines.push('No held-out test images, so no test metrics.', '');
  }
  const pairs = r.kind === 'finetune' ? (r.nearDuplicates ?? null) : null;
  if (pairs && pairs.length > 0) {
    lines.push('## Possible near-duplicates across splits', '', NEAR_DUPLICATES_NOTE, '', '| held-out image | split | training image | score |', '| --- | --- | --- | ---: |');
    for (const p of pairs) lines.push(`| ${mdCell(p.heldOut)} | ${p.split} | ${mdCell(p.train)} | ${p.score.toFixed(3)} |`);
    lines.push('');
  }
  const suspects = r.kind === 'finetune' ? (r.suspects ?? null) : null;
  if (suspects) {
    lines.push('## Test images whose label is probably wrong', '', SUSPECTS_NOTE, '');
    if (suspects.length === 0) lines.push('None.', '');
    else {
      lines.push('| image | given | likely | p(given) | p(likely) |', '| --- | --- | --- | ---: | ---: |');
      for (const x of suspects) lines.push(`| ${mdCell(x.path)} | ${mdCell(x.given)} | ${mdCell(x.likely)} | ${x.givenProbability.toFixed(3)} | ${x.likelyProbability.toFixed(3)} |`);
      lines.push('');
    }
  }
  if (r.kind === 'finetune' && r.history.length > 0) {
    lines.push('## Training', '', '| epoch | loss | accuracy | val loss | val accuracy | lr | seconds |', '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const h of r.history) lines.push(`| ${h.epoch} | ${num(h.loss)} | ${num(h.accuracy, 3)} | ${num(h.val_loss)} | ${num(h.val_accuracy, 3)} | ${h.lr.toPrecision(3)} | ${h.seconds.toFixed(1)} |`);
    lines.push('');
  }
  if (r.skipped.length > 0) {
    lines.push(`## Skipped files (${r.skipped.length})`, '');
    for (const s of r.skipped.slice(0, 50)) lines.push(`- ${s.path}: ${s.reason}`);
    if (r.skipped.length > 50) lines.push(`- … and ${r.skipped.length - 50} more (see report.json)`);
    lines.push('');
  }
  lines.push('<details><summary>Configuration</summary>', '', '| | |', '| --- | --- |', ...configEntries(r).map(([k, v]) => `| ${k} | ${mdCell(v)} |`), '', '</details>', '');
  return lines.join('\n');
}

const SUSPECTS_NOTE = "Confident learning on the model's probabilities of the test images (which it never trained on): an image is listed when another class's probability passes that class's own threshold (its mean probability over the images labelled with it) and is the likeliest such class. Worst first. `tl data --suspects` audits every image, training ones included.";

const NEAR_DUPLICATES_NOTE = 'A validation or test image that looks like a training image resized, re-encoded or cropped (crop-aware correlation of grayscale thumbnails; `tl data --duplicates` lists every pair). If they are one picture, the held-out metrics include an image the model trained on. Distinct images that look much alike (plain items of one class at a low resolution) can be listed too.';

const escape = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** A small JPEG of an image as a data URI, or null when it cannot be read. */
async function thumbnail(path: string): Promise<string | null> {
  try {
    const jpeg = await sharp(path, { limitInputPixels: 1e8 }).rotate().resize(96, 96, { fit: 'inside' }).flatten({ background: '#ffffff' }).jpeg({ quality: 80 }).toBuffer();
    return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
  } catch {
    return null;
  }
}

/** What report.html shows beyond report.json. */
export interface HtmlExtras {
  /** A JPEG contact sheet of augmented training images, and the level that drew them. */
  augmentSheet?: { jpeg: Buffer; level: string; images: number };
}

/** The self-contained HTML report. */
export async function renderHtml(r: Report, extras: HtmlExtras = {}): Promise<string> {
  const m = r.metrics;
  const figures: [string, string][] = [];
  if (r.kind === 'finetune' && r.history.length > 0) {
    figures.push(['loss-curve', await renderSvg(learningCurveSpec(r.history, 'loss'))]);
    figures.push(['accuracy-curve', await renderSvg(learningCurveSpec(r.history, 'accuracy'))]);
  }
  const fa = freezeAutoOf(r);
  if (fa) figures.push(['freeze-depth', await renderSvg(freezeDepthSpec(fa))]);
  if (m) {
    figures.push(['confusion-matrix', await renderSvg(confusionSpec(m))]);
    figures.push(['f1-per-class', await renderSvg(f1Spec(m))]);
    figures.push(['reliability', await renderSvg(reliabilitySpec(m))]);
  }
  /** An image's thumbnail, or a box saying it could not be read. */
  const img = (src: string | null, alt: string) => (src ? `<img src="${src}" alt="${escape(alt)}">` : '<div class="missing">unreadable</div>');
  const thumbs = m ? await Promise.all(m.mistakes.map(async (x) => ({ ...x, src: await thumbnail(x.path) }))) : [];
  const table = (rows: string[][], head: string[]) => `<table><thead><tr>${head.map((h) => `<th>${escape(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((row) => `<tr>${row.map((c) => `<td>${escape(c)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
  const body: string[] = [`<h1>${escape(title(r))}</h1>`];
  if (r.kind === 'finetune' && r.stopReason) body.push(`<p class="note">Stopped: ${escape(r.stopReason)}.</p>`);
  if (r.kind === 'finetune' && r.calibration) body.push(`<p>${escape(calibrationLine(r.calibration))}</p>`);
  for (const c of choices(r)) body.push(`<p>${escape(c)}</p>`);
  if (r.kind === 'finetune') for (const w of r.warnings) body.push(`<p class="note">Warning: ${escape(w)}.</p>`);
  const ml = r.multiLabel ?? null;
  const stats = ml ? multiLabelHeadline(ml) : m ? headline(m) : null;
  if (stats) body.push(`<section id="headline">${stats.map(([k, v]) => `<div class="stat"><div class="value">${escape(v)}</div><div class="label">${escape(k)}</div></div>`).join('')}</section>`);
  else body.push('<p class="note">No held-out test images, so no test metrics.</p>');
  if (ml) figures.push(['f1-per-label', await renderSvg(labelBarsSpec(ml))]);
  body.push(`<section id="charts">${figures.map(([id, svg]) => `<figure id="chart-${id}" class="chart">${svg}</figure>`).join('')}</section>`);
  if (m) {
    body.push('<h2>Per class</h2>', table([...m.perClass.map((c) => [c.name, num(c.precision, 3), num(c.recall, 3), num(c.f1, 3), String(c.support)]), ['macro', num(m.macro.precision, 3), num(m.macro.recall, 3), num(m.macro.f1, 3), String(m.count)], ['weighted', num(m.weighted.precision, 3), num(m.weighted.recall, 3), num(m.weighted.f1, 3), String(m.count)]], ['class', 'precision', 'recall', 'F1', 'support']));
    body.push('<h2>Reliability</h2>', table(m.reliability.filter((b) => b.count > 0).map((b) => [`${b.lower.toFixed(2)}–${b.upper.toFixed(2)}`, String(b.count), num(b.confidence, 3), num(b.accuracy, 3)]), ['confidence bin', 'images', 'mean confidence', 'accuracy']));
    body.push('<h2>Most confident mistakes</h2>');
    body.push(thumbs.length === 0 ? '<p>None.</p>' : `<section id="mistakes">${thumbs.map((t) => `<figure class="mistake">${img(t.src, t.path)}<figcaption><b>${escape(t.predicted)}</b> ${(t.probability * 100).toFixed(0)}%<br>true: ${escape(t.true)}<br><span class="path">${escape(t.path)}</span></figcaption></figure>`).join('')}</section>`);
  }
  if (ml) body.push('<h2>Per label</h2>', '<p>Each label is predicted where its probability is at least its threshold (tuned for F1 on the validation split).</p>', table(multiLabelRows(ml), MULTI_LABEL_HEAD));
  const pairs = r.kind === 'finetune' ? (r.nearDuplicates ?? null) : null;
  if (pairs && pairs.length > 0) {
    const shown = await Promise.all(pairs.slice(0, 24).map(async (p) => ({ ...p, held: await thumbnail(p.heldOut), trained: await thumbnail(p.train) })));
    body.push('<h2>Possible near-duplicates across splits</h2>', `<p>${escape(NEAR_DUPLICATES_NOTE)}</p>`, `<section id="near-duplicates">${shown.map((p) => `<figure class="pair">${img(p.held, p.heldOut)}${img(p.trained, p.train)}<figcaption>${escape(p.split)} / train, ${p.score.toFixed(3)}<br><span class="path">${escape(p.heldOut)}<br>${escape(p.train)}</span></figcaption></figure>`).join('')}</section>`);
  }
  const suspects = r.kind === 'finetune' ? (r.suspects ?? null) : null;
  if (suspects) {
    const shown = await Promise.all(suspects.slice(0, 48).map(async (x) => ({ ...x, src: await thumbnail(x.path) })));
    body.push('<h2>Test images whose label is probably wrong</h2>', `<p>${escape(SUSPECTS_NOTE)}</p>`);
    body.push(shown.length === 0 ? '<p>None.</p>' : `<section id="suspects">${shown.map((t) => `<figure class="mistake">${img(t.src, t.path)}<figcaption>given <b>${escape(t.given)}</b> ${(t.givenProbability * 100).toFixed(0)}%<br>likely: ${escape(t.likely)} ${(t.likelyProbability * 100).toFixed(0)}%<br><span class="path">${escape(t.path)}</span></figcaption></figure>`).join('')}</section>${suspects.length > shown.length ? `<p>… and ${suspects.length - shown.length} more (report.json).</p>` : ''}`);
  }
  const sheet = extras.augmentSheet;
  if (sheet) body.push(`<h2>Augmented training images</h2><figure id="augment-sheet"><img src="data:image/jpeg;base64,${sheet.jpeg.toString('base64')}" alt="augmented training images"><figcaption>${sheet.images} training images as --augment ${escape(sheet.level)} shows them to the model (one draw each; every epoch draws anew)</figcaption></figure>`);
  if (r.kind === 'finetune' && r.history.length > 0) body.push('<h2>Training</h2>', table(r.history.map((h) => [String(h.epoch), num(h.loss), num(h.accuracy, 3), num(h.val_loss), num(h.val_accuracy, 3), h.lr.toPrecision(3), h.seconds.toFixed(1)]), ['epoch', 'loss', 'accuracy', 'val loss', 'val accuracy', 'lr', 'seconds']));
  if (r.skipped.length > 0) body.push(`<h2>Skipped files (${r.skipped.length})</h2>`, table(r.skipped.slice(0, 200).map((s) => [s.path, s.reason]), ['file', 'reason']));
  body.push('<h2>Configuration</h2>', `<section id="config">${table(configEntries(r), ['setting', 'value'])}</section>`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title(r))}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
#headline{display:flex;flex-wrap:wrap;gap:1rem}.stat{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem}
.stat .value{font-size:1.3rem;font-weight:600}.stat .label{color:#666;font-size:.8rem}
#charts{display:flex;flex-wrap:wrap;gap:1.5rem;margin-top:1.5rem}.chart{margin:0}
table{border-collapse:collapse;font-size:.85rem}td,th{border-bottom:1px solid #eee;padding:.2rem .6rem;text-align:left}
#mistakes,#suspects,#near-duplicates{display:flex;flex-wrap:wrap;gap:.75rem}.pair{margin:0;width:210px;font-size:.75rem}.pair img{max-width:96px;max-height:96px;margin-right:4px}.mistake{margin:0;width:120px;font-size:.75rem}
.mistake img{display:block;max-width:96px;max-height:96px;border:2px solid #e45756}.path{color:#888;word-break:break-all}
.note{background:#fff4e5;padding:.5rem}
</style></head>
<body>
${body.join('\n')}
</body></html>
`;
}
