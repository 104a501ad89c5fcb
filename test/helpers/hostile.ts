// Builds a dataset folder full of awkward files, with what tl should do with each.
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';

const solid = (w: number, h: number, rgb: [number, number, number]) => sharp({ create: { width: w, height: h, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } });

/** Writes the hostile dataset under `root`; returns the paths expected to be skipped, with a reason pattern. */
export async function makeHostileDataset(root: string): Promise<{ skipped: Record<string, RegExp>; goodPerClass: Record<string, number> }> {
  const a = join(root, 'apples');
  const b = join(root, 'bananas');
  await mkdir(join(a, 'nested', 'deeper'), { recursive: true });
  await mkdir(b, { recursive: true });

  // Good images (a): plain JPEG, RGBA PNG, 16-bit PNG, grayscale, CMYK JPEG, EXIF-rotated, animated GIF, nested.
  await solid(40, 30, [200, 30, 30]).jpeg().toFile(join(a, 'plain.jpg'));
  const rgba = Buffer.alloc(8 * 8 * 4);
  for (let i = 0; i < 64; i++) rgba.set(i < 32 ? [0, 0, 255, 255] : [0, 0, 0, 0], i * 4);
  await sharp(rgba, { raw: { width: 8, height: 8, channels: 4 } }).png().toFile(join(a, 'rgba.png'));
  await solid(16, 16, [128, 128, 128]).toColourspace('rgb16').png().toFile(join(a, 'sixteen.png'));
  await solid(16, 16, [90, 90, 90]).toColourspace('b-w').png().toFile(join(a, 'gray.png'));
  await solid(16, 16, [220, 20, 20]).toColourspace('cmyk').jpeg({ quality: 100 }).toFile(join(a, 'cmyk.jpg'));
  // 40 wide x 20 tall, red on top, blue below; orientation 6 displays it rotated 90 degrees clockwise (red on the right).
  const halves = Buffer.alloc(40 * 20 * 3);
  for (let y = 0; y < 20; y++) for (let x = 0; x < 40; x++) halves.set(y < 10 ? [255, 0, 0] : [0, 0, 255], (y * 40 + x) * 3);
  await sharp(halves, { raw: { width: 40, height: 20, channels: 3 } }).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toFile(join(a, 'rotated.jpg'));
  const frames = await Promise.all([solid(12, 12, [0, 255, 0]).png().toBuffer(), solid(12, 12, [255, 0, 255]).png().toBuffer()]);
  await sharp(frames, { join: { animated: true } }).gif().toFile(join(a, 'nested', 'animated.gif'));
  await solid(20, 20, [10, 200, 10]).webp().toFile(join(a, 'nested', 'deeper', 'no-extension'));

  // Good images (b).
  for (let i = 0; i < 3; i++) await solid(24, 24, [250, 230, 40 + i]).png().toFile(join(b, `banana${i}.png`));

  // Bad or ignored files.
  await writeFile(join(b, 'zero.jpg'), '');
  const full = await solid(64, 64, [1, 2, 3]).jpeg().toBuffer();
  await writeFile(join(b, 'truncated.jpg'), full.subarray(0, Math.floor(full.length / 2)));
  await writeFile(join(b, 'text.jpg'), 'this is not an image\n');
  await solid(400, 400, [5, 5, 5]).png().toFile(join(b, 'huge.png'));
  await symlink(join(b, 'does-not-exist.png'), join(b, 'broken-link.png'));
  await symlink(b, join(b, 'loop'));
  await writeFile(join(b, '.hidden.png'), 'hidden');
  await writeFile(join(b, 'notes.txt'), 'notes');
  await solid(8, 8, [0, 0, 0]).png().toFile(join(b, 'unreadable.png'));
  await chmod(join(b, 'unreadable.png'), 0o000);
  const runningAsRoot = process.getuid?.() === 0;

  const skipped: Record<string, RegExp> = {
    'bananas/zero.jpg': /empty file/,
    'bananas/truncated.jpg': /truncated|corrupt/,
    'bananas/text.jpg': /not an image/,
    'bananas/huge.png': /too many pixels/,
    'bananas/broken-link.png': /broken symlink/,
    'bananas/loop': /symlink loop/,
  };
  // Root reads any file, so permissions cannot make one unreadable there.
  if (!runningAsRoot) skipped['bananas/unreadable.png'] = /permission denied/;
  return { skipped, goodPerClass: { apples: 8, bananas: runningAsRoot ? 4 : 3 } };
}
