#!/usr/bin/env node
// Starts the built CLI (dist/, made by `npm run build`; the published package ships it built).
import { existsSync } from 'node:fs';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(`tl: ${main.pathname} is missing: this checkout is not built yet; run \`npm run build\` in ${new URL('..', import.meta.url).pathname}\n`);
  process.exit(1);
}
const { main: run } = await import(main.href);
run(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
