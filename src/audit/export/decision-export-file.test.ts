// The export file's CSV is lossless: a record written as a CSV row reads back to the same
// canonical content (so the same hash), whatever its values, and the reader follows RFC 4180.
import { canonicalJson, prepareDecision } from '../chain/decision-chain';
import { csvRows, exportLine, recordFromCsv } from './decision-export-file';

function* chunks(text: string, size: number): Generator<string> {
  for (let i = 0; i < text.length; i += size) yield text.slice(i, i + size);
}

async function rows(text: string, size = 3): Promise<{ text: string; quoted: boolean }[][]> {
  const all = [];
  for await (const row of csvRows(chunks(text, size))) all.push(row);
  return all;
}

describe('export CSV', () => {
  it('reads a record back to the content it was written from, fields it has no column for included', async () => {
    const prepared = prepareDecision({
      id: '6f1c2d3e-0000-4000-8000-000000000001',
      time: new Date('2026-11-30T10:00:00.123Z'),
      requestId: '=1+1',
      subject: null,
      userId: null,
      organization: '',
      action: 'project:read',
      resource: { type: 'project', org: 'acme', project: "'quoted" },
      method: 'GET',
      path: '/orgs/acme/projects/"a,b"\r\nnext',
      allow: false,
      status: 403,
      reasons: ['-1', 'line\nbreak', ''],
      policyRevision: '@rev',
      evalLatencyUs: null,
      input: { ratio: 0.1, big: 1e21, text: 'é ✓\t', list: [null, true] },
      dryRun: true,
      directoryVersion: 7,
    });
    // A reason code with its params, and a field a newer gateway might hash, which this CSV has no column for.
    const content = canonicalJson({
      ...(JSON.parse(prepared.content) as object),
      code: 'missing_permission',
      code_params: { permission: 'project:read' },
      future_field: [1, 'two'],
    });
    const line = exportLine('gw-1', { id: 'x', seq: 42, logSeq: 420, prevHash: 'p'.repeat(64), hash: 'h'.repeat(64), content }, 'csv');
    const [cells] = await rows(`${line}\n`);
    const record = recordFromCsv(cells!);
    expect(record).toMatchObject({ chain: 'gw-1', seq: 42, prevHash: 'p'.repeat(64), hash: 'h'.repeat(64) });
    expect(canonicalJson(record.content)).toBe(content);
    expect(record.content).toMatchObject({
      directory_version: 7,
      code: 'missing_permission',
      code_params: { permission: 'project:read' },
      future_field: [1, 'two'],
    });
    expect(line).toContain(',missing_permission,"{""permission"": ""project:read""}",');
    // Nothing a spreadsheet would run.
    expect(line.split(',').some((cell) => /^[=+\-@]/.test(cell))).toBe(false);
  });

  it('reads quoted cells across lines and chunks, doubled quotes, CRLF row ends and a last row without one', async () => {
    expect(await rows('a,"b ""c""\nd",\r\n"",x')).toEqual([
      [
        { text: 'a', quoted: false },
        { text: 'b "c"\nd', quoted: true },
        { text: '', quoted: false },
      ],
      [
        { text: '', quoted: true },
        { text: 'x', quoted: false },
      ],
    ]);
  });
});
