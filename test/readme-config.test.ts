// Every ```yaml block of the README is a configuration a reader may copy: each must load
// through the real loader (YAML parse, ${VAR} interpolation, the schema), with the variables
// it names set, and with them unset where that means "absent". A block that is only an
// excerpt says so on its first line (`# excerpt: ...`) and is loaded over a minimal config.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { loadConfigFile } from '../src/config/load-config';
import { projectRoot } from '../src/project-root';

const MINIMAL = {
  auth: { issuer: 'https://id.example.com', audience: 'portcullis', jwks_file: 'jwks.json' },
  services: { organizations: { url: 'http://127.0.0.1:7001' } },
};

interface Block {
  line: number;
  text: string;
}

async function yamlBlocks(): Promise<Block[]> {
  const lines = (await readFile(path.join(projectRoot, 'README.md'), 'utf8')).split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```ya?ml\s*$/.test(lines[i]!)) continue;
    const end = lines.findIndex((line, j) => j > i && /^```\s*$/.test(line));
    if (end === -1) throw new Error(`README.md:${i + 1}: a yaml block is not closed`);
    blocks.push({ line: i + 1, text: lines.slice(i + 1, end).join('\n') });
    i = end;
  }
  return blocks;
}

/** A value each variable could really have: URLs where a URL goes, a token long enough for admin.token. */
function plausible(name: string): string {
  if (/DATABASE_URL|PG_URL/.test(name)) return 'postgres://portcullis:secret@db.internal:5432/platform';
  if (/URL|ISSUER/.test(name)) return 'https://example.com/value';
  if (/TOKEN|SECRET|KEY/.test(name)) return 'x'.repeat(32);
  return 'value';
}

/** Names of the variables that are a whole string value somewhere in the document. */
function wholeVariables(value: unknown): string[] {
  if (typeof value === 'string')
    return [/^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(value)?.[1]].filter((name): name is string => name !== undefined);
  if (value !== null && typeof value === 'object') return Object.values(value).flatMap(wholeVariables);
  return [];
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-readme-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

async function load(block: Block, env: Record<string, string>): Promise<unknown> {
  const excerpt = /^#\s*excerpt\b/i.test(block.text.trimStart());
  const text = excerpt ? stringifyYaml({ ...MINIMAL, ...(parseYaml(block.text) as object) }) : block.text;
  const file = path.join(dir, `readme-${block.line}.yaml`);
  await writeFile(file, text);
  return loadConfigFile(file, env);
}

describe('the configuration examples of the README', () => {
  it('has yaml examples to check', async () => {
    expect((await yamlBlocks()).length).toBeGreaterThan(0);
  });

  it('loads every yaml block through the real config loader, with the variables it names set', async () => {
    for (const block of await yamlBlocks()) {
      const names = [...new Set([...block.text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((match) => match[1]!))];
      const env = Object.fromEntries(names.map((name) => [name, plausible(name)]));
      const outcome = await load(block, env).then(
        () => 'loads',
        (error: Error) => error.message,
      );
      expect({ block: `README.md:${block.line}`, outcome }).toEqual({ block: `README.md:${block.line}`, outcome: 'loads' });
    }
  });

  it('loads every yaml block with the variables that are whole values unset (they count as absent)', async () => {
    for (const block of await yamlBlocks()) {
      // Only a variable inside a longer string stays set: unset there, it is an error by design.
      const whole = new Set(wholeVariables(parseYaml(block.text)));
      const names = [...new Set([...block.text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((match) => match[1]!))];
      const env = Object.fromEntries(names.filter((name) => !whole.has(name)).map((name) => [name, plausible(name)]));
      const outcome = await load(block, env).then(
        () => 'loads',
        (error: Error) => error.message,
      );
      expect({ block: `README.md:${block.line}`, outcome }).toEqual({ block: `README.md:${block.line}`, outcome: 'loads' });
    }
  });
});
