// The `_method` override in a request body. Rails (Rack::MethodOverride), Laravel, Symfony and
// Express's method-override read a POSTed form's `_method` field and run that method instead:
// a request judged as `POST` (project:create) would run as `DELETE` upstream. Laravel reads it
// from a JSON body too (its request bag is the JSON for a JSON request). The query parameter
// and the override headers are refused before anything is judged (inspect-request); a body is
// only read while it is forwarded, so it passes through a FormMethodOverrideGuard on its way to
// the upstream. The guard reads the form's field names (multipart with busboy, the parser
// multer and @fastify/busboy use) or the JSON object's top-level member names as it streams,
// and lets a chunk through only once it has read it: a body with a `_method` field fails
// before the bytes that complete the field reach the upstream, and an upstream never acts on
// a body it did not receive in full. A compressed body is held whole and decoded to be read.
import { finished, Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import type { IncomingHttpHeaders } from 'node:http';
import busboy, { type Busboy } from 'busboy';
import { InputError } from '../base/errors';
import { isMethodOverrideName } from './inspect-request';
import { MultipartPartHeaders, multipartBoundaries } from './multipart-part-headers';

/**
 * The body's guard, or undefined when the request carries no body an upstream would read for
 * `_method`: a body typed `application/x-www-form-urlencoded` or `multipart/*` (the media type
 * read as PHP and Rack read it), or JSON (`/json` or `+json` anywhere in the Content-Type, as
 * Laravel tells JSON; both readings when a form says so too), any method; or a POST body
 * with no Content-Type at all (Rack reads that as a form). A compressed body (gzip, deflate,
 * br, in layers) is held whole and decoded to be checked, then forwarded as it came. Throws
 * InputError for a body it could not check: another coding (415), or a multipart type
 * without a boundary (400).
 */
export function formMethodOverrideGuard(
  method: string,
  headers: IncomingHttpHeaders,
  options: FormGuardOptions = {},
): FormMethodOverrideGuard | undefined {
  const declared = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
  if (declared === 0 || (declared === undefined && headers['transfer-encoding'] === undefined)) return undefined;
  const contentType = headers['content-type'] ?? '';
  const lower = contentType.trim().toLowerCase();
  // PHP reads the media type up to the first `;`, `,` or space, Rack up to `;` or `,`: a form
  // typed `application/x-www-form-urlencoded, text/plain` is still a form to them.
  const mediaType = lower.split(/[;,\s]/, 1)[0]!;
  const parsers: FormNameParser[] = [];
  if (mediaType === 'application/x-www-form-urlencoded' || (mediaType === '' && method === 'POST')) {
    parsers.push(new UrlencodedNames());
  } else if (mediaType.startsWith('multipart/')) {
    parsers.push(multipartNames(contentType));
  }
  // Laravel tells JSON by `/json` or `+json` anywhere in the header, parameters included; a
  // form that says so is read both ways.
  if (lower.includes('/json') || lower.includes('+json')) parsers.push(new JsonMemberNames());
  if (parsers.length === 0) return undefined;
  const parser = parsers.length === 1 ? parsers[0]! : new EveryReading(parsers);
  const codings = contentCodings(headers['content-encoding']);
  if (codings.length === 0) return new StreamingFormGuard(parser, declared);
  const unknown = codings.find((coding) => !DECODERS.has(coding));
  if (unknown !== undefined) {
    throw new InputError(
      `a ${parser.kind} body with Content-Encoding "${unknown}" is refused: the gateway cannot decode it to check it for a "_method" field`,
      415,
    );
  }
  return new DecodingFormGuard(parser, codings, options.maxDecodedBytes ?? MAX_DECODED_BYTES);
}

/**
 * How many bytes a compressed body may decode to before it is refused (413): a zip bomb is not
 * read to its end. The default of `server.decoded_body_limit_bytes`.
 */
export const MAX_DECODED_BYTES = 64 * 1024 * 1024;

export interface FormGuardOptions {
  /** Default MAX_DECODED_BYTES. */
  maxDecodedBytes?: number;
}

/** The codings a body was compressed with, in the order they were applied (`identity` dropped). */
function contentCodings(header: string | undefined): string[] {
  if (header === undefined) return [];
  return header
    .split(',')
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== '' && coding !== 'identity');
}

/**
 * The codings the gateway decodes to check a body (RFC 9110 §8.4.1). `deflate` is the zlib
 * format, and raw deflate too, which some clients send and some servers accept.
 */
const DECODERS = new Map<string, (raw: boolean) => Transform>([
  ['gzip', () => zlib.createGunzip()],
  ['x-gzip', () => zlib.createGunzip()],
  ['deflate', (raw) => (raw ? zlib.createInflateRaw() : zlib.createInflate())],
  ['br', () => zlib.createBrotliDecompress()],
]);

/** A body read as a form and as JSON at once: every name either reading finds. */
class EveryReading implements FormNameParser {
  readonly kind: FormNameParser['kind'];

  constructor(private readonly readings: readonly FormNameParser[]) {
    this.kind = readings[0]!.kind;
  }

  set onName(onName: (name: string) => void) {
    for (const reading of this.readings) reading.onName = onName;
  }

  write(chunk: Buffer, done: (error?: Error | null) => void): void {
    this.each((reading, next) => reading.write(chunk, next), done);
  }

  end(done: (error?: Error | null) => void): void {
    this.each((reading, next) => reading.end(next), done);
  }

  /** Runs `step` on each reading in turn; the first error ends it. */
  private each(step: (reading: FormNameParser, next: (error?: Error | null) => void) => void, done: (error?: Error | null) => void): void {
    const run = (index: number): void => {
      if (index === this.readings.length) return done();
      step(this.readings[index]!, (error) => (error ? done(error) : run(index + 1)));
    };
    run(0);
  }
}

/** What a body's names are called, by its kind, in messages. */
const FIELD_WORD = { form: 'form field', JSON: 'JSON member' } as const;

/** A name read across chunks: the slices of the earlier chunks it spans, then its end. */
function spanning(parts: readonly Buffer[], last: Buffer): Buffer {
  return parts.length === 0 ? last : Buffer.concat([...parts, last]);
}

/** Reads a body's field names as its bytes come; tells each name to `onName` as soon as it is whole. */
interface FormNameParser {
  /** What the body is, for messages. */
  readonly kind: keyof typeof FIELD_WORD;
  write(chunk: Buffer, done: (error?: Error | null) => void): void;
  end(done: (error?: Error | null) => void): void;
  onName: (name: string) => void;
}

/**
 * Field names of a urlencoded body, split at `&` and at `;` (older Rack and PHP setups split a
 * form there too, as inspect-request does the query), `+` read as a space; isMethodOverrideName
 * percent-decodes. Values are skipped, never kept.
 */
class UrlencodedNames implements FormNameParser {
  readonly kind = 'form';
  onName: (name: string) => void = () => undefined;
  /** The name read so far, as slices of the chunks it spans. */
  private parts: Buffer[] = [];
  private inName = true;

  write(chunk: Buffer, done: (error?: Error | null) => void): void {
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte === AMPERSAND || byte === SEMICOLON) {
        if (this.inName) this.flushName(chunk.subarray(start, i));
        this.inName = true;
        start = i + 1;
      } else if (this.inName && byte === EQUALS) {
        this.flushName(chunk.subarray(start, i));
        this.inName = false;
      }
    }
    if (this.inName && start < chunk.length) this.parts.push(chunk.subarray(start));
    done();
  }

  end(done: (error?: Error | null) => void): void {
    if (this.inName) this.flushName(Buffer.alloc(0));
    done();
  }

  private flushName(last: Buffer): void {
    const name = spanning(this.parts, last);
    this.parts = [];
    if (name.length > 0) this.onName(name.toString('latin1').replaceAll('+', ' '));
  }
}

const [AMPERSAND, SEMICOLON, EQUALS] = [0x26, 0x3b, 0x3d];

/** A Content-Type gives one boundary, or up to three readings of one (quoted, padded): more is not a client's. */
const MAX_BOUNDARIES = 6;

/**
 * Field and file names of a multipart body (busboy), and every name a more lenient parser could
 * take from its part headers (MultipartPartHeaders); a malformed body is an error.
 */
function multipartNames(contentType: string): FormNameParser {
  // Rack reads the parts of multipart/mixed or /related too; busboy parses them as form-data.
  const params = contentType.indexOf(';') === -1 ? '' : contentType.slice(contentType.indexOf(';'));
  const boundaries = multipartBoundaries(contentType);
  // Each is searched for in every byte of the body: a type naming many is refused, not searched.
  if (boundaries.length > MAX_BOUNDARIES) throw unreadable(new Error(`the Content-Type names ${boundaries.length} boundaries`));
  let parser: Busboy;
  try {
    // Names in full (a long one must not be cut to something else); values are never kept.
    parser = busboy({
      headers: { 'content-type': `multipart/form-data${params}` },
      limits: { fieldNameSize: Number.MAX_SAFE_INTEGER, fieldSize: 0 },
    });
  } catch (error) {
    throw unreadable(error as Error);
  }
  const headers = new MultipartPartHeaders(boundaries);
  let failure: Error | undefined;
  const names: FormNameParser = {
    kind: 'form',
    onName: () => undefined,
    write: (chunk, done) => {
      try {
        headers.write(chunk);
      } catch (error) {
        failure ??= error as Error;
      }
      parser.write(chunk, (error) => done(error ?? failure));
    },
    end: (done) => {
      headers.end();
      parser.end();
      // The last part is told by the parser's final step, before it finishes (or fails).
      finished(parser, (error) => done(error ?? failure));
    },
  };
  headers.onName = (name) => names.onName(name);
  parser.on('field', (name: string) => names.onName(name));
  parser.on('file', (name: string, file: NodeJS.ReadableStream) => {
    file.resume();
    names.onName(name);
  });
  parser.on('error', (error: Error) => (failure ??= error));
  return names;
}

/**
 * Passes a body through unchanged once it has been read for names; fails at a `_method` field
 * or a body it cannot read. How it reads (as the bytes come, or held and decoded) is its kind's.
 */
export abstract class FormMethodOverrideGuard extends Transform {
  /** The first reason to refuse the body; once set, nothing more passes. */
  protected refusal: InputError | undefined;

  constructor(protected readonly parser: FormNameParser) {
    super();
    parser.onName = (name) => {
      if (!this.refusal && isMethodOverrideName(name)) {
        this.refusal = new InputError(
          `the ${FIELD_WORD[parser.kind]} "_method" is refused: the gateway judges and forwards the method as sent`,
        );
      }
    };
  }
}

/** An uncompressed body: each chunk passes once the parser has read it. */
class StreamingFormGuard extends FormMethodOverrideGuard {
  private received = 0;

  constructor(
    parser: FormNameParser,
    /** The Content-Length: the chunk that completes it is parsed to the form's end before it passes. */
    private readonly declared: number | undefined,
  ) {
    super(parser);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.received += chunk.length;
    const last = this.declared !== undefined && this.received >= this.declared;
    this.parser.write(chunk, (error) => {
      this.fail(error);
      if (!last || this.refusal) this.pass(done, chunk);
      else this.parser.end((ended) => this.pass(done, chunk, ended));
    });
  }

  override _flush(done: TransformCallback): void {
    if (this.declared !== undefined && this.received >= this.declared) done(this.refusal);
    else this.parser.end((error) => this.pass(done, undefined, error));
  }

  private pass(done: TransformCallback, chunk: Buffer | undefined, error?: Error | null): void {
    this.fail(error);
    if (this.refusal) done(this.refusal);
    else done(null, chunk);
  }

  private fail(error: Error | null | undefined): void {
    if (error) this.refusal ??= unreadable(error);
  }
}

/**
 * A compressed body: held whole (the body limit bounds it), decoded and read when it ends, and
 * let through as it came only then. Decoding in slices as it streams would have to tell which
 * compressed bytes complete a field; the upstream gets the body a few milliseconds later instead.
 */
class DecodingFormGuard extends FormMethodOverrideGuard {
  private readonly held: Buffer[] = [];

  constructor(
    parser: FormNameParser,
    private readonly codings: readonly string[],
    private readonly maxDecodedBytes: number,
  ) {
    super(parser);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.held.push(chunk);
    done();
  }

  override _flush(done: TransformCallback): void {
    this.decodeInto(false)
      // `deflate` that is not in the zlib format (it failed before a byte came out): read it as
      // raw deflate, as lenient servers do.
      .catch((error: Error) => (this.decoded === 0 && this.codings.includes('deflate') ? this.decodeInto(true) : Promise.reject(error)))
      .then(() => new Promise<void>((resolve, reject) => this.parser.end((error) => (error ? reject(unreadable(error)) : resolve()))))
      .then(
        () => {
          if (this.refusal) return done(this.refusal);
          for (const chunk of this.held) this.push(chunk);
          done();
        },
        (error: Error) => done(this.refusal ?? (error instanceof InputError ? error : undecodable(this.codings, error))),
      );
  }

  /** Bytes the current decoding has given the parser. */
  private decoded = 0;

  /** Decodes the held body (the last coding applied undone first) into the parser; stops at a refusal. */
  private async decodeInto(rawDeflate: boolean): Promise<void> {
    this.decoded = 0;
    const into = new Writable({
      write: (chunk: Buffer, _encoding, next: (error?: Error) => void) => {
        this.decoded += chunk.length;
        if (this.decoded > this.maxDecodedBytes) {
          next(new InputError(`the compressed body decodes to more than ${this.maxDecodedBytes} bytes; it is refused unread`, 413));
          return;
        }
        this.parser.write(chunk, (error) => next(error ? unreadable(error) : this.refusal));
      },
    });
    const decoders = [...this.codings].reverse().map((coding) => DECODERS.get(coding)!(rawDeflate));
    await pipeline([Readable.from(this.held), ...decoders, into]);
  }
}

function undecodable(codings: readonly string[], error: Error): InputError {
  return new InputError(`the body cannot be decoded as Content-Encoding "${codings.join(', ')}" (${error.message})`, 400, { cause: error });
}

function unreadable(error: Error): InputError {
  return new InputError(`the form body cannot be read (${error.message})`, 400, { cause: error });
}

/**
 * The member names of a JSON body's top-level object (the only ones Laravel reads `_method`
 * from), escapes decoded. It does not check the JSON: a body an upstream cannot parse has no
 * member to act on. Values, nested members and a top level that is not an object are skipped.
 */
class JsonMemberNames implements FormNameParser {
  readonly kind = 'JSON';
  onName: (name: string) => void = () => undefined;
  /** The open objects and arrays, innermost last. */
  private readonly open: number[] = [];
  private inString = false;
  private escaped = false;
  /** After the top-level object's `{` or one of its `,`: the next string is a member name. */
  private nameNext = false;
  /** Whether the string being read is a top-level member name, and its bytes so far. */
  private inName = false;
  private parts: Buffer[] = [];

  write(chunk: Buffer, done: (error?: Error | null) => void): void {
    let nameStart = 0;
    // Where the next quote and backslash are (-1: none left in the chunk): most of a JSON body's
    // bytes are inside strings, which are crossed by a native search instead of byte by byte.
    let quote = -2;
    let backslash = -2;
    for (let i = 0; i < chunk.length; i++) {
      if (this.inString && !this.escaped) {
        if (quote !== -1 && quote < i) quote = chunk.indexOf(QUOTE, i);
        if (backslash !== -1 && backslash < i) backslash = chunk.indexOf(BACKSLASH, i);
        const next = quote === -1 ? backslash : backslash === -1 ? quote : Math.min(quote, backslash);
        if (next === -1) break;
        i = next;
      }
      const byte = chunk[i]!;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (byte === BACKSLASH) this.escaped = true;
        else if (byte === QUOTE) {
          this.inString = false;
          if (this.inName) this.flushName(chunk.subarray(nameStart, i));
        }
      } else if (byte === QUOTE) {
        this.inString = true;
        this.inName = this.nameNext && this.open.length === 1;
        this.nameNext = false;
        nameStart = i + 1;
      } else if (byte === OPEN_OBJECT || byte === OPEN_ARRAY) {
        this.open.push(byte);
        this.nameNext = byte === OPEN_OBJECT && this.open.length === 1;
      } else if (byte === CLOSE_OBJECT || byte === CLOSE_ARRAY) {
        this.open.pop();
      } else if (byte === COMMA) {
        this.nameNext = this.open.length === 1 && this.open[0] === OPEN_OBJECT;
      }
    }
    if (this.inName) this.parts.push(chunk.subarray(nameStart));
    done();
  }

  end(done: (error?: Error | null) => void): void {
    done();
  }

  private flushName(last: Buffer): void {
    const raw = spanning(this.parts, last).toString('utf8');
    this.parts = [];
    this.inName = false;
    let name: string;
    try {
      name = JSON.parse(`"${raw}"`) as string;
    } catch {
      // Not a JSON string (a control character, a bad escape): the upstream cannot parse the body either.
      name = raw;
    }
    this.onName(name);
  }
}

const [QUOTE, BACKSLASH, COMMA, OPEN_OBJECT, CLOSE_OBJECT, OPEN_ARRAY, CLOSE_ARRAY] = [0x22, 0x5c, 0x2c, 0x7b, 0x7d, 0x5b, 0x5d];
