// Reads the newest V8 CPU profile (node --cpu-prof) in a folder and lists where the time
// went: self time per function, and the share of the whole.
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

export async function summarizeProfile(dir: string, top: number): Promise<string[]> {
  const files = await Promise.all(
    (await readdir(dir))
      .filter((name) => name.endsWith('.cpuprofile'))
      .map(async (name) => ({ name, mtime: (await stat(path.join(dir, name))).mtimeMs })),
  );
  const newest = files.sort((x, y) => y.mtime - x.mtime)[0];
  if (!newest) return ['no .cpuprofile found'];
  const profile = JSON.parse(await readFile(path.join(dir, newest.name), 'utf8')) as { nodes: ProfileNode[] };
  const self = new Map<string, number>();
  const byPackage = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    total += hits;
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url ? `${shorten(url)}:${lineNumber + 1}` : '';
    const key = `${functionName || '(anonymous)'} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + hits);
    const pkg = packageOf(url, functionName);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + hits);
  }
  const pct = (hits: number) => `${((100 * hits) / total).toFixed(1).padStart(5)} %`;
  return [
    `CPU profile ${newest.name}: ${total} samples`,
    'self time by package:',
    ...[...byPackage]
      .sort((x, y) => y[1] - x[1])
      .slice(0, 15)
      .map(([pkg, hits]) => `  ${pct(hits)}  ${pkg}`),
    `top ${top} functions by self time:`,
    ...[...self]
      .sort((x, y) => y[1] - x[1])
      .slice(0, top)
      .map(([key, hits]) => `  ${pct(hits)}  ${key}`),
  ];
}

function shorten(url: string): string {
  const i = url.lastIndexOf('node_modules/');
  if (i >= 0) return url.slice(i + 'node_modules/'.length);
  const j = url.indexOf('.bench/');
  return j >= 0 ? url.slice(j + '.bench/'.length) : url.replace(/^file:\/\//, '');
}

function packageOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native/V8)';
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/')[0]}`;
  const i = url.lastIndexOf('node_modules/');
  if (i >= 0) {
    const rest = url.slice(i + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.includes('/.bench/src/')) return `portcullis ${url.split('/.bench/src/')[1]!.split('/')[0]}`;
  return 'other';
}
