import autocannon from 'autocannon';
import { spawn } from 'node:child_process';
import sharp from 'sharp';
const jpeg = await sharp('/work/main/test/.tmp/debian/python3-skimage/usr/lib/python3/dist-packages/skimage/data/chelsea.png').resize(500, 375).jpeg({ quality: 90 }).toBuffer().catch(async () => sharp({ create: { width: 500, height: 375, channels: 3, background: { r: 1, g: 2, b: 3 } } }).jpeg().toBuffer());
for (const args of JSON.parse(process.argv[2])) {
  const child = spawn(process.execPath, ['/work/main/bin/tl.js', 'serve', '/tmp/sr/run2000', '--port', '0', '--json', ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TL_HOME: '/tmp/sr/home' } });
  const url = await new Promise((r) => child.stdout.once('data', (d) => r(JSON.parse(d.toString()).url)));
  await autocannon({ url: url + '/predict', method: 'POST', body: jpeg, connections: 4, duration: 2 });
  for (const c of [1, 8, 32]) {
    const h0 = await (await fetch(url + '/health')).json();
    const r = await autocannon({ url: url + '/predict', method: 'POST', body: jpeg, connections: c, duration: 5 });
    const h1 = await (await fetch(url + '/health')).json();
    console.log(args.join(' '), c, r.requests.average, r.latency.p50, r.latency.p99, ((h1.items - h0.items) / (h1.batches - h0.batches)).toFixed(2));
  }
  child.kill('SIGTERM'); await new Promise((r) => child.on('exit', r));
}
