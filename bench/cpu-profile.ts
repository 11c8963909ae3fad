// Reads a V8 CPU profile (the target's measured window) and lists where the time went: self
// time per package and per function, and inclusive time (the function and all it calls) per
// Portcullis module and per package, in shares of the window and in µs of the main thread
// per request.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
}

/** `requests`: served in the profiled window, for µs per request. */
export async function summarizeProfile(file: string, top: number, requests?: number): Promise<string[]> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as Profile;
  const self = new Map<string, number>();
  const byPackage = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    total += hits;
    const { functionName, url } = node.callFrame;
    const key = frameName(node);
    self.set(key, (self.get(key) ?? 0) + hits);
    const pkg = packageOf(url, functionName);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + hits);
  }
  const { byModule, byPackageInclusive } = inclusive(profile);
  const perRequestUs = requests ? (profile.endTime - profile.startTime) / total / requests : undefined;
  const line = ([name, hits]: [string, number]) =>
    `  ${((100 * hits) / total).toFixed(1).padStart(5)} %${perRequestUs === undefined ? '' : `  ${(hits * perRequestUs).toFixed(1).padStart(6)} µs/request`}  ${name}`;
  const ranked = (map: Map<string, number>, count: number) =>
    [...map]
      .sort((x, y) => y[1] - x[1])
      .slice(0, count)
      .map(line);
  return [
    `CPU profile ${path.basename(file)}: ${total} samples over ${((profile.endTime - profile.startTime) / 1e6).toFixed(1)} s` +
      (requests ? `, ${requests} requests` : ''),
    'self time by package:',
    ...ranked(byPackage, 15),
    'inclusive time by Portcullis module (the module and everything it calls, each sample counted once per module):',
    ...ranked(byModule, 25),
    'inclusive time by package:',
    ...ranked(byPackageInclusive, 15),
    `top ${top} functions by self time:`,
    ...ranked(self, top),
  ];
}

/** Samples under each Portcullis module and each package, walking every stack once. */
function inclusive(profile: Profile): { byModule: Map<string, number>; byPackageInclusive: Map<string, number> } {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const byModule = new Map<string, number>();
  const byPackageInclusive = new Map<string, number>();
  const onStack = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, hits: number) => map.set(key, (map.get(key) ?? 0) + hits);
  const walk = (node: ProfileNode) => {
    const { url, functionName } = node.callFrame;
    const module = moduleOf(url);
    const pkg = url ? packageOf(url, functionName) : undefined;
    const keys = [module && `m:${module}`, pkg && `p:${pkg}`].filter((key): key is string => Boolean(key));
    for (const key of keys) onStack.set(key, (onStack.get(key) ?? 0) + 1);
    const hits = node.hitCount ?? 0;
    if (hits > 0) {
      for (const key of onStack.keys()) add(key.startsWith('m:') ? byModule : byPackageInclusive, key.slice(2), hits);
    }
    for (const child of node.children ?? []) walk(nodes.get(child)!);
    for (const key of keys) {
      const depth = onStack.get(key)! - 1;
      if (depth === 0) onStack.delete(key);
      else onStack.set(key, depth);
    }
  };
  walk(profile.nodes[0]!);
  return { byModule, byPackageInclusive };
}

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url ? `${shorten(url)}:${lineNumber + 1}` : '';
  return `${functionName || '(anonymous)'} ${where}`.trim();
}

/** `src/gateway/request-pipeline` for a compiled Portcullis module; undefined for anything else. */
function moduleOf(url: string): string | undefined {
  const match = /\/(src\/[^:]+?)\.js$/.exec(url);
  return match && !url.includes('node_modules/') ? match[1] : undefined;
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
  const module = moduleOf(url);
  if (module) return `portcullis ${module.split('/')[1]}`;
  return 'other';
}
