import { expect } from '@jest/globals';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import type { IncomingHttpHeaders } from 'node:http';
import { InputError } from '../base/errors';
import { formMethodOverrideGuard } from './form-method-override';

const FORM = 'application/x-www-form-urlencoded';
const BOUNDARY = 'b0undary';
const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;

interface Outcome {
  /** The bytes the guard let through, in order. */
  passed: string;
  refusal: InputError | undefined;
}

/** Streams `body` through a guard for a request with these headers, in chunks of `chunkSize` bytes. */
async function through(
  body: string,
  headers: IncomingHttpHeaders,
  options: { method?: string; chunkSize?: number } = {},
): Promise<Outcome> {
  const { passed, refusal } = await throughBytes(Buffer.from(body), headers, options);
  return { passed: passed.toString(), refusal };
}

async function throughBytes(
  bytes: Buffer,
  headers: IncomingHttpHeaders,
  options: { method?: string; chunkSize?: number; maxDecodedBytes?: number } = {},
): Promise<{ passed: Buffer; refusal: InputError | undefined }> {
  const guard = formMethodOverrideGuard(
    options.method ?? 'POST',
    { 'content-length': String(bytes.length), ...headers },
    { maxDecodedBytes: options.maxDecodedBytes },
  );
  if (!guard) throw new Error('expected a guard for this request');
  const size = options.chunkSize ?? bytes.length;
  const chunks: Buffer[] = [];
  for (let start = 0; start < bytes.length; start += size) chunks.push(bytes.subarray(start, start + size));
  const passed: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      passed.push(chunk);
      done();
    },
  });
  try {
    await pipeline(Readable.from(chunks), guard, sink);
    return { passed: Buffer.concat(passed), refusal: undefined };
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    return { passed: Buffer.concat(passed), refusal: error };
  }
}

const part = (name: string, value: string, extra = '') =>
  `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"${extra}\r\n\r\n${value}\r\n`;
const multipart = (...parts: string[]) => `${parts.join('')}--${BOUNDARY}--\r\n`;

describe('which bodies are checked', () => {
  it.each([
    ['a urlencoded form', 'PUT', { 'content-type': `${FORM}; charset=utf-8`, 'content-length': '3' }],
    ['a multipart form', 'POST', { 'content-type': MULTIPART, 'content-length': '3' }],
    [
      'multipart/mixed (Rack reads its parts too)',
      'POST',
      { 'content-type': `multipart/mixed; boundary=${BOUNDARY}`, 'content-length': '3' },
    ],
    ['a POST body without a Content-Type (Rack reads it as a form)', 'POST', { 'content-length': '3' }],
    ['a chunked form', 'POST', { 'content-type': FORM, 'transfer-encoding': 'chunked' }],
    ['JSON (Laravel reads _method from it)', 'POST', { 'content-type': 'application/json', 'content-length': '3' }],
    ['JSON with parameters', 'PUT', { 'content-type': 'Application/JSON; charset=utf-8', 'content-length': '3' }],
    ['a +json type', 'PATCH', { 'content-type': 'application/merge-patch+json', 'content-length': '3' }],
  ])('checks %s', (_name, method, headers: IncomingHttpHeaders) => {
    expect(formMethodOverrideGuard(method, headers)).toBeDefined();
  });

  it.each([
    ['plain text', 'POST', { 'content-type': 'text/plain', 'content-length': '3' }],
    ['a body-less GET', 'GET', {}],
    ['an empty form', 'POST', { 'content-type': FORM, 'content-length': '0' }],
    ['a PUT body without a Content-Type', 'PUT', { 'content-length': '3' }],
  ])('leaves %s alone', (_name, method, headers: IncomingHttpHeaders) => {
    expect(formMethodOverrideGuard(method, headers)).toBeUndefined();
  });

  it.each(['compress', 'zstd', 'gzip, compress', 'constructor'])('refuses a body in a coding it cannot decode (%s) with 415', (coding) => {
    expect(() => formMethodOverrideGuard('POST', { 'content-type': FORM, 'content-length': '9', 'content-encoding': coding })).toThrow(
      expect.objectContaining({
        status: 415,
        message: expect.stringMatching(/^a form body with Content-Encoding "(compress|zstd|constructor)"/),
      }),
    );
    expect(() =>
      formMethodOverrideGuard('POST', { 'content-type': 'application/json', 'content-length': '9', 'content-encoding': coding }),
    ).toThrow(expect.objectContaining({ status: 415, message: expect.stringMatching(/^a JSON body/) }));
  });

  it('refuses a multipart body without a boundary with 400', () => {
    expect(() => formMethodOverrideGuard('POST', { 'content-type': 'multipart/form-data', 'content-length': '9' })).toThrow(
      expect.objectContaining({ status: 400 }),
    );
  });
});

describe('what a body is taken for, as the frameworks that read _method take it', () => {
  it.each([
    ['a form type followed by a comma (PHP, Rack)', 'application/x-www-form-urlencoded, text/plain', '_method=DELETE'],
    ['a form type followed by a space (PHP)', 'application/x-www-form-urlencoded text/plain', 'name=x&_method=DELETE'],
    ['/json in a parameter (Laravel reads the whole header)', 'text/plain; charset="/json"', '{"_method":"DELETE"}'],
    ['a form that says +json, read as a form', 'application/x-www-form-urlencoded; profile=x+json', '_method=DELETE'],
    ['a form that says +json, read as JSON', 'application/x-www-form-urlencoded; profile=x+json', '{"name=":1,"_method":"DELETE"}'],
  ])('refuses _method in %s', async (_name, contentType, body) => {
    for (const chunkSize of [1, 4, body.length]) {
      const { refusal } = await through(body, { 'content-type': contentType }, { chunkSize });
      expect(refusal).toMatchObject({ status: 400, message: expect.stringMatching(/"_method" is refused/) });
    }
  });

  it('passes a form that says +json and holds no _method either way, byte for byte', async () => {
    const body = '{"name":"x","note":"_method"}&a=1';
    expect(await through(body, { 'content-type': 'application/x-www-form-urlencoded; x=+json' })).toEqual({
      passed: body,
      refusal: undefined,
    });
  });

  it('leaves a text/plain body alone', () => {
    expect(formMethodOverrideGuard('POST', { 'content-type': 'text/plain; charset=utf-8', 'content-length': '14' })).toBeUndefined();
  });
});

describe('compressed bodies', () => {
  const JSON_TYPE = { 'content-type': 'application/json' };
  const encoders: Record<string, (bytes: Buffer) => Buffer> = {
    gzip: (bytes) => zlib.gzipSync(bytes),
    'x-gzip': (bytes) => zlib.gzipSync(bytes),
    deflate: (bytes) => zlib.deflateSync(bytes),
    br: (bytes) => zlib.brotliCompressSync(bytes),
  };
  /** `body` compressed with each of `codings`, in order (the Content-Encoding lists them so). */
  const encoded = (body: string, codings: string[]) =>
    codings.reduce<Buffer>((bytes, coding) => encoders[coding]!(bytes), Buffer.from(body));

  it.each([['gzip'], ['x-gzip'], ['deflate'], ['br'], ['gzip', 'br'], ['deflate', 'gzip']])(
    'decodes %s to refuse a _method field, and lets nothing through',
    async (...codings: string[]) => {
      const headers = { 'content-encoding': codings.join(', ') };
      for (const [type, body] of [
        [FORM, 'name=x&_method=DELETE'],
        [FORM, 'name=x&_method'], // told only when the form ends
        [JSON_TYPE['content-type'], '{"name":"x","_method":"DELETE"}'],
        [MULTIPART, multipart(part('name', 'x'), part('_method', 'DELETE'))],
      ] as const) {
        const bytes = encoded(body, codings);
        for (const chunkSize of [1, 7, bytes.length]) {
          const { passed, refusal } = await throughBytes(bytes, { ...headers, 'content-type': type }, { chunkSize });
          expect(refusal).toMatchObject({ status: 400, message: expect.stringMatching(/"_method" is refused/) });
          expect(passed.length).toBe(0);
        }
      }
    },
  );

  it('forwards a compressed body without one as it came, byte for byte', async () => {
    const body = JSON.stringify({ name: 'x', note: '_method', nested: { _method: 'DELETE' }, padding: 'a'.repeat(100_000) });
    const bytes = encoded(body, ['gzip']);
    for (const chunkSize of [1_000, bytes.length]) {
      const { passed, refusal } = await throughBytes(bytes, { ...JSON_TYPE, 'content-encoding': 'GZIP' }, { chunkSize });
      expect(refusal).toBeUndefined();
      expect(passed.equals(bytes)).toBe(true);
    }
  });

  it('reads deflate without the zlib wrapper (raw deflate) too', async () => {
    const bytes = zlib.deflateRawSync(Buffer.from('_method=DELETE'));
    const { refusal } = await throughBytes(bytes, { 'content-type': FORM, 'content-encoding': 'deflate' });
    expect(refusal).toMatchObject({ status: 400, message: expect.stringMatching(/"_method" is refused/) });
  });

  it('refuses a body that does not decode with 400, and one that decodes past the limit with 413, forwarding none of it', async () => {
    const corrupt = await throughBytes(Buffer.from('not gzip at all'), { 'content-type': FORM, 'content-encoding': 'gzip' });
    expect(corrupt.refusal).toMatchObject({ status: 400, message: expect.stringMatching(/cannot be decoded as Content-Encoding "gzip"/) });
    expect(corrupt.passed.length).toBe(0);

    const bomb = zlib.gzipSync(Buffer.alloc(5_000_000, 'a'));
    const big = await throughBytes(bomb, { 'content-type': FORM, 'content-encoding': 'gzip' }, { maxDecodedBytes: 1_000_000 });
    expect(big.refusal).toMatchObject({ status: 413, message: expect.stringMatching(/decodes to more than 1000000 bytes/) });
    expect(big.passed.length).toBe(0);
    const withinLimit = await throughBytes(bomb, { 'content-type': FORM, 'content-encoding': 'gzip' }, { maxDecodedBytes: 5_000_000 });
    expect(withinLimit.refusal).toBeUndefined();
  });

  it('refuses a compressed multipart body that cannot be read as a form with 400', async () => {
    const bytes = encoded(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\nx`, ['gzip']);
    const { refusal } = await throughBytes(bytes, { 'content-type': MULTIPART, 'content-encoding': 'gzip' });
    expect(refusal).toMatchObject({ status: 400, message: expect.stringMatching(/form body cannot be read/) });
  });
});

describe('urlencoded forms', () => {
  it.each([
    '_method=DELETE',
    'name=x&_method=DELETE',
    'name=x&_method=DELETE&more=1',
    '_METHOD=delete',
    '%5Fmethod=DELETE',
    '%255Fmethod=DELETE',
    '_method%5B%5D=DELETE',
    '_method[]=DELETE',
    '+_method=DELETE',
    'name=x&_method',
    'name=x;_method=DELETE',
  ])('refuses %s, and the field never reaches the upstream whole', async (body) => {
    const { passed, refusal } = await through(body, { 'content-type': FORM });
    expect(refusal).toMatchObject({ status: 400, message: expect.stringMatching(/form field "_method" is refused/) });
    expect(passed).toBe('');
  });

  it('stops at the chunk that completes the field, wherever the chunks are cut', async () => {
    const body = 'name=alpha&note=hello+there&_method=DELETE';
    for (let chunkSize = 1; chunkSize <= body.length; chunkSize++) {
      const { passed, refusal } = await through(body, { 'content-type': FORM }, { chunkSize });
      expect(refusal?.status).toBe(400);
      // The upstream never holds the whole body, so nothing upstream can act on it.
      expect(passed.length).toBeLessThan(body.length);
      expect(body.startsWith(passed)).toBe(true);
    }
  });

  it('reads a name however many chunks it spans (100 kB of encoded spaces before _method)', async () => {
    const body = `a=1&${'%20'.repeat(33_000)}_method=DELETE`;
    expect((await through(body, { 'content-type': FORM }, { chunkSize: 4096 })).refusal?.status).toBe(400);
    const harmless = `a=1&${'x'.repeat(100_000)}_method=DELETE`;
    expect(await through(harmless, { 'content-type': FORM }, { chunkSize: 4096 })).toEqual({ passed: harmless, refusal: undefined });
  });

  it('passes a form whose _method appears only in a value or inside a longer name, byte for byte', async () => {
    const body = 'q=_method&x_method=1&_methods=2&method=DELETE';
    for (const chunkSize of [1, 7, body.length]) {
      expect(await through(body, { 'content-type': FORM }, { chunkSize })).toEqual({ passed: body, refusal: undefined });
    }
  });

  it('checks a POST body without a Content-Type as a form', async () => {
    expect((await through('_method=DELETE', {})).refusal?.status).toBe(400);
    expect(await through('{"name":"x"}', {})).toEqual({ passed: '{"name":"x"}', refusal: undefined });
  });

  it('checks a chunked form to its end before the end reaches the upstream', async () => {
    const body = 'name=x&_method';
    const guard = formMethodOverrideGuard('POST', { 'content-type': FORM, 'transfer-encoding': 'chunked' })!;
    let passed = '';
    let ended = false;
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        passed += chunk.toString();
        done();
      },
      final(done) {
        ended = true;
        done();
      },
    });
    await expect(pipeline(Readable.from([Buffer.from(body)]), guard, sink)).rejects.toMatchObject({ status: 400 });
    // Its bytes went on (a chunked body is whole only at its end), but the end did not.
    expect(passed).toBe(body);
    expect(ended).toBe(false);
  });
});

describe('JSON bodies', () => {
  const JSON_TYPE = { 'content-type': 'application/json' };

  it.each([
    '{"_method":"DELETE"}',
    '{"name":"api","_method":"DELETE"}',
    '{\n  "name": "api",\n  "_method" : "DELETE"\n}',
    '{"\\u005fmethod":"DELETE"}',
    '{"_METHOD":"delete"}',
    '{"nested":{"a":[1,{"b":"}],\\"{"}],"c":"\\\\"},"_method":"DELETE"}',
    '{"name":"x","_method":{"not":"a string"}}',
  ])('refuses %s, and the member never reaches the upstream whole', async (body) => {
    const { passed, refusal } = await through(body, JSON_TYPE);
    expect(refusal).toMatchObject({ status: 400, message: expect.stringMatching(/JSON member "_method" is refused/) });
    expect(passed).toBe('');
  });

  it.each([
    '{"name":"alpha","tags":["a","b"],"_method":"DELETE"}',
    // Escaped quotes and backslashes, and a quote-looking value, wherever a chunk ends.
    '{"name":"al\\"pha\\\\","tags":["a\\\\\\"b","\\"_method\\":"],"_m\\u0065thod":"DELETE"}',
  ])('stops %s at the chunk that completes the member name, wherever the chunks are cut', async (body) => {
    expect(Object.keys(JSON.parse(body) as object)).toContain('_method');
    for (let chunkSize = 1; chunkSize <= body.length; chunkSize++) {
      const { passed, refusal } = await through(body, JSON_TYPE, { chunkSize });
      expect(refusal?.status).toBe(400);
      // At most the bytes before the name's closing quote.
      expect(passed.length).toBeLessThanOrEqual(body.lastIndexOf('thod"') + 'thod'.length);
      expect(body.startsWith(passed)).toBe(true);
    }
  });

  it.each([
    ['_method as a value', '{"name":"_method","note":"\\"_method\\": 1"}'],
    ['_method in a nested object', '{"project":{"_method":"DELETE"},"list":[{"_method":"DELETE"}]}'],
    ['a top level that is an array', '[{"_method":"DELETE"}]'],
    ['longer names', '{"x_method":1,"_methods":2,"method":"DELETE"}'],
    ['a body that is not JSON', 'not json, "_method": 1'],
  ])('passes %s, byte for byte', async (_name, body) => {
    for (const chunkSize of [1, 5, body.length]) {
      expect(await through(body, JSON_TYPE, { chunkSize })).toEqual({ passed: body, refusal: undefined });
    }
  });
});

describe('multipart forms', () => {
  it('refuses a _method field before the part that holds it is complete', async () => {
    const body = multipart(part('name', 'x'), part('_method', 'DELETE'), part('after', 'y'));
    for (const chunkSize of [1, 13, 64, body.length]) {
      const { passed, refusal } = await through(body, { 'content-type': MULTIPART }, { chunkSize });
      expect(refusal).toMatchObject({ status: 400, message: expect.stringMatching(/_method/) });
      expect(passed.length).toBeLessThan(body.indexOf('after'));
    }
  });

  it('refuses a file part named _method', async () => {
    const body = multipart(part('_Method', 'DELETE', '; filename="m.txt"'));
    expect((await through(body, { 'content-type': MULTIPART })).refusal?.status).toBe(400);
  });

  it('refuses the parts of multipart/mixed too', async () => {
    const body = multipart(part('_method', 'DELETE'));
    expect((await through(body, { 'content-type': `multipart/mixed; boundary=${BOUNDARY}` })).refusal?.status).toBe(400);
  });

  it('passes an upload whose file content mentions name="_method", byte for byte', async () => {
    const template = '<form method="post"><input type="hidden" name="_method" value="DELETE"></form>';
    const body = multipart(part('title', 'edit form'), part('template', template, '; filename="edit.html"'));
    for (const chunkSize of [1, 50, body.length]) {
      expect(await through(body, { 'content-type': MULTIPART }, { chunkSize })).toEqual({ passed: body, refusal: undefined });
    }
  });

  // busboy reads only form-data parts framed by CRLF and one boundary; PHP (Laravel, Symfony)
  // and Rack read a part's name more leniently, so these would reach them as a `_method` field.
  it.each([
    [
      'a disposition other than form-data (PHP, Rack)',
      `--${BOUNDARY}\r\nContent-Disposition: attachment; name="_method"\r\n\r\nDELETE\r\n`,
    ],
    ['a disposition with no type at all', `--${BOUNDARY}\r\nContent-Disposition: ;name=_method\r\n\r\nDELETE\r\n`],
    ['a part named by its Content-ID (Rack)', `--${BOUNDARY}\r\nContent-ID: _method\r\n\r\nDELETE\r\n`],
    ['a folded Content-Disposition', `--${BOUNDARY}\r\nContent-Disposition: attachment;\r\n name="_method"\r\n\r\nDELETE\r\n`],
    ['lines ended by LF alone (PHP)', `--${BOUNDARY}\nContent-Disposition: form-data; name="_method"\n\nDELETE\n`],
    ['a single-quoted name (PHP)', `--${BOUNDARY}\r\nContent-Disposition: inline; name='_method'\r\n\r\nDELETE\r\n`],
    ["RFC 8187's name*", `--${BOUNDARY}\r\nContent-Disposition: attachment; name*=UTF-8''%5Fmethod\r\n\r\nDELETE\r\n`],
  ])('refuses a _method part with %s before its value reaches the upstream', async (_name, first) => {
    const body = `${first}--${BOUNDARY}\r\nContent-Disposition: form-data; name="after"\r\n\r\ny\r\n--${BOUNDARY}--\r\n`;
    for (let chunkSize = 1; chunkSize <= body.length; chunkSize += chunkSize < 16 ? 1 : 23) {
      const { passed, refusal } = await through(body, { 'content-type': MULTIPART }, { chunkSize });
      expect(refusal).toMatchObject({ status: 400, message: expect.stringMatching(/_method/) });
      expect(passed.length).toBeLessThan(body.indexOf('DELETE') + 'DELETE'.length);
    }
  });

  it.each([
    ['PHP: the first "boundary" anywhere in the type', 'multipart/form-data; xboundary=evil; boundary=b0undary'],
    ['Rack: the last boundary parameter', 'multipart/form-data; boundary=b0undary; boundary=evil'],
    ['the first of two boundary parameters', 'multipart/form-data; boundary=evil; boundary=b0undary'],
  ])('refuses a _method part framed by a boundary another parser reads (%s)', async (_name, contentType) => {
    const hidden = '--evil\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--evil--\r\n';
    const body = hidden + multipart(part('title', 'x'));
    expect((await through(body, { 'content-type': contentType })).refusal).toMatchObject({ status: 400 });
  });

  it('refuses a part whose name is on a header line without a colon (PHP appends it to the line before), as busboy cannot read it', async () => {
    const body = multipart(`--${BOUNDARY}\r\nContent-Disposition: attachment;\r\nname="_method"\r\n\r\nDELETE\r\n`);
    for (const chunkSize of [1, 9, body.length]) {
      const { passed, refusal } = await through(body, { 'content-type': MULTIPART }, { chunkSize });
      expect(refusal).toMatchObject({ status: 400 });
      expect(passed.length).toBeLessThan(body.indexOf('DELETE') + 'DELETE'.length);
    }
  });

  it('refuses a Content-Type naming many boundaries with 400 rather than search the body for each', () => {
    const contentType = `multipart/form-data; ${Array.from({ length: 7 }, (_, n) => `boundary=b${n}`).join('; ')}`;
    expect(() => formMethodOverrideGuard('POST', { 'content-type': contentType, 'content-length': '9' })).toThrow(
      expect.objectContaining({ status: 400, message: expect.stringMatching(/names 7 boundaries/) }),
    );
    const quoted = 'multipart/form-data; boundary="----=_Part_1_Boundary=x"';
    expect(formMethodOverrideGuard('POST', { 'content-type': quoted, 'content-length': '9' })).toBeDefined();
  });

  it('passes an upload whose content has lines like part headers but no boundary, byte for byte', async () => {
    const content = '--b0undar\r\nContent-ID: _method\r\n\r\n-- b0undary\nContent-Disposition: attachment; name="_method"\n\nx';
    const body = multipart(part('title', 'notes'), part('notes', content, '; filename="notes.txt"'));
    for (const chunkSize of [1, 7, 64, body.length]) {
      expect(await through(body, { 'content-type': MULTIPART }, { chunkSize })).toEqual({ passed: body, refusal: undefined });
    }
  });

  it('refuses part headers over 16 KiB as unreadable, before they all reach the upstream', async () => {
    const body = `--${BOUNDARY}\nX-Padding: ${'a'.repeat(17 * 1024)}\n\nx\n--${BOUNDARY}--\n`;
    const { passed, refusal } = await through(body, { 'content-type': MULTIPART }, { chunkSize: 1024 });
    expect(refusal).toMatchObject({ status: 400, message: expect.stringMatching(/form body cannot be read .*16384 bytes/) });
    expect(passed.length).toBeLessThan(17 * 1024);
  });

  it('refuses a form cut short: what the upstream would get cannot be checked', async () => {
    const body = `--${BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\nx`;
    const { refusal } = await through(body, { 'content-type': MULTIPART });
    expect(refusal).toMatchObject({ status: 400, message: expect.stringMatching(/form body cannot be read/) });
  });
});
