// An OPA bundle (.tar.gz) as the gateway uses it: the compiled policy.wasm, the merged
// data.json and the manifest's revision.
import { createHash } from 'node:crypto';
import { Parser, type ReadEntry } from 'tar';

export interface PolicyBundle {
  wasm: Buffer;
  data: Record<string, unknown>;
  revision: string;
  files: ReadonlyMap<string, Buffer>;
}

export async function readBundle(bytes: Buffer): Promise<PolicyBundle> {
  const files = await untar(bytes);
  const wasm = files.get('policy.wasm');
  if (!wasm) throw new Error('the bundle has no policy.wasm (build it with `opa build -t wasm`)');
  const data = parseJson(files.get('data.json'), 'data.json') ?? {};
  const manifest = parseJson(files.get('.manifest'), '.manifest') ?? {};
  const revision =
    typeof manifest.revision === 'string' && manifest.revision
      ? manifest.revision
      : `sha256:${createHash('sha256').update(wasm).digest('hex').slice(0, 16)}`;
  return { wasm, data, revision, files };
}

function parseJson(bytes: Buffer | undefined, name: string): Record<string, unknown> | undefined {
  if (!bytes) return undefined;
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (error) {
    throw new Error(`the bundle's ${name} is not a JSON object: ${(error as Error).message}`);
  }
}

function untar(bytes: Buffer): Promise<Map<string, Buffer>> {
  return new Promise((resolve, reject) => {
    const files = new Map<string, Buffer>();
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        const chunks: Buffer[] = [];
        entry.on('data', (chunk: Buffer) => chunks.push(chunk));
        entry.on('end', () => {
          if (entry.type === 'File') files.set(entry.path.replace(/^\/+/, ''), Buffer.concat(chunks));
        });
      },
    });
    parser.on('error', (error: Error) => reject(new Error(`the bundle is not a valid .tar.gz: ${error.message}`)));
    parser.on('end', () => resolve(files));
    parser.end(bytes);
  });
}
