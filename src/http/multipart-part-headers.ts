// Every name an upstream's multipart parser could take from a part's headers, however lenient it
// is. busboy (the guard's parser, and multer's) reads only `form-data` parts framed by CRLF and
// the Content-Type's one `boundary` parameter. Others read more:
// - PHP (so Laravel and Symfony) takes a part's name from a Content-Disposition of any type
//   (`attachment; name="_method"` is a POST field), splits lines at LF, appends a header line
//   without a colon to the one before, and takes its boundary after the first "boundary"
//   anywhere in the Content-Type (`xboundary=…` included);
// - Rack takes `name=` from any Content-Disposition line, falls back to a Content-ID header for
//   a part without one, and takes its boundary from the last `boundary=`.
// So this scanner looks for `--` and each boundary any of them could mean at the start of any
// line, and reads the lines after such a delimiter, up to an empty one, as a part's headers; a
// name in them is reported whatever the part's disposition. A body's content (in which a client
// never puts its own boundary) is crossed by a native search.

/** The most bytes of part headers read before the body is refused as unreadable: busboy's limit too. */
export const MAX_PART_HEADERS = 16 * 1024;

/** Each boundary a parser could read from this Content-Type, as PHP, Rack or busboy would. */
export function multipartBoundaries(contentType: string): string[] {
  const found = new Set<string>();
  const lower = contentType.toLowerCase();
  for (let at = lower.indexOf('boundary'); at !== -1; at = lower.indexOf('boundary', at + 1)) {
    const equals = contentType.indexOf('=', at + 'boundary'.length);
    if (equals === -1) break;
    const rest = contentType.slice(equals + 1);
    const end = rest.search(/[,;]/);
    const raw = end === -1 ? rest : rest.slice(0, end);
    found.add(raw);
    found.add(raw.trim());
    const quoted = /^\s*"([^"]*)/.exec(rest);
    if (quoted) found.add(quoted[1]!);
  }
  found.delete('');
  return [...found];
}

/**
 * The names a part's header lines (line breaks removed) could give it: every `name` parameter
 * (quoted, single-quoted or bare, and RFC 8187's `name*`) when the part has a
 * Content-Disposition of any type, and every Content-ID. More than any one parser reads, never less.
 */
export function partHeaderNames(lines: readonly string[]): string[] {
  const text = lines.join('\n');
  const names: string[] = [];
  if (/content-disposition/i.test(text)) {
    for (const match of text.matchAll(NAME_PARAMETER)) names.push(...parameterValues(text.slice(match.index + match[0].length)));
  }
  for (const match of text.matchAll(CONTENT_ID)) names.push(match[1]!);
  return names;
}

const NAME_PARAMETER = /(?:^|[\s;])name\*?[ \t]*=[ \t]*/gim;
const CONTENT_ID = /content-id[ \t]*:[ \t]*([^\n]*)/gi;

/** A parameter's value as each parser reads it, from the text after its `=`. */
function parameterValues(rest: string): string[] {
  const values: string[] = [];
  const quote = rest[0];
  if (quote === '"' || quote === "'") {
    const close = rest.indexOf(quote, 1);
    values.push(rest.slice(1, close === -1 ? undefined : close)); // Rack: to the next quote
    let unescaped = '';
    let onlyQuotes = ''; // PHP unescapes only an escaped quote
    for (let i = 1; i < rest.length && rest[i] !== quote; i++) {
      if (rest[i] === '\\' && i + 1 < rest.length) {
        unescaped += rest[i + 1];
        onlyQuotes += rest[i + 1] === quote ? quote : `\\${rest[i + 1]}`;
        i++;
      } else {
        unescaped += rest[i];
        onlyQuotes += rest[i];
      }
    }
    values.push(unescaped, onlyQuotes);
  } else {
    values.push(/^[^\s;]*/.exec(rest)![0], /^[^";\n]*/.exec(rest)![0]);
  }
  // RFC 8187's ext-value: charset'language'percent-encoded (isMethodOverrideName decodes).
  for (const value of [...values]) {
    const extended = /^[^']*'[^']*'(.*)$/s.exec(value);
    if (extended) values.push(extended[1]!);
  }
  return values;
}

const LF = 0x0a;
const LINE_START = Buffer.from('\n');
const CR = 0x0d;

/** Streams a multipart body's bytes and tells `onName` each name its part headers could give. */
export class MultipartPartHeaders {
  onName: (name: string) => void = () => undefined;
  /** `\n--boundary` for each boundary: a delimiter starts a line. */
  private readonly delimiters: Buffer[];
  private readonly longest: number;
  private state: 'content' | 'delimiter line' | 'headers' = 'content';
  /** In content: the last bytes of the chunks before (a delimiter may span chunks); a body starts as if after a line break. */
  private carry: Buffer = LINE_START;
  private lines: string[] = [];
  private line: Buffer[] = [];
  private headerBytes = 0;

  constructor(boundaries: readonly string[]) {
    this.delimiters = boundaries.map((boundary) => Buffer.from(`\n--${boundary}`, 'latin1'));
    this.longest = Math.max(...this.delimiters.map((delimiter) => delimiter.length));
  }

  /** Throws when a part's headers pass MAX_PART_HEADERS. */
  write(chunk: Buffer): void {
    const data = this.state === 'content' ? Buffer.concat([this.carry, chunk]) : chunk;
    let at = 0;
    while (at < data.length) {
      if (this.state === 'content') {
        const found = this.nextDelimiter(data, at);
        if (found === undefined) {
          this.carry = Buffer.from(data.subarray(Math.max(at, data.length - (this.longest - 1))));
          return;
        }
        at = found;
        this.state = 'delimiter line';
        continue;
      }
      const end = data.indexOf(LF, at);
      if (this.state === 'delimiter line') {
        if (end === -1) return;
        this.state = 'headers';
        at = end + 1;
        continue;
      }
      this.take(data.subarray(at, end === -1 ? data.length : end));
      if (end === -1) return;
      // The part's content starts a line, so a delimiter may follow at once: the content is
      // searched from the line break that ended the headers.
      at = this.endLine() ? end : end + 1;
    }
  }

  /** The headers of a part the body ends in are read too. */
  end(): void {
    if (this.state !== 'headers') return;
    if (this.line.length > 0) this.lines.push(this.lineText());
    this.report();
  }

  /** Where the first delimiter found from `from` ends, if any. */
  private nextDelimiter(data: Buffer, from: number): number | undefined {
    let end: number | undefined;
    let start = Infinity;
    for (const delimiter of this.delimiters) {
      const found = data.indexOf(delimiter, from);
      if (found !== -1 && found < start) [start, end] = [found, found + delimiter.length];
    }
    return end;
  }

  private take(bytes: Buffer): void {
    this.headerBytes += bytes.length + 1;
    if (this.headerBytes > MAX_PART_HEADERS) throw new Error(`a part's headers pass ${MAX_PART_HEADERS} bytes`);
    if (bytes.length > 0) this.line.push(bytes);
  }

  /** True when the line ends the part's headers. */
  private endLine(): boolean {
    const text = this.lineText();
    if (text !== '') {
      this.lines.push(text);
      return false;
    }
    this.report();
    this.state = 'content';
    return true;
  }

  /** The line read so far, without the CR that may end it (PHP reads LF and CRLF lines alike). */
  private lineText(): string {
    const bytes = this.line.length === 1 ? this.line[0]! : Buffer.concat(this.line);
    this.line = [];
    const length = bytes.length > 0 && bytes[bytes.length - 1] === CR ? bytes.length - 1 : bytes.length;
    return bytes.toString('latin1', 0, length);
  }

  private report(): void {
    for (const name of partHeaderNames(this.lines)) this.onName(name);
    this.lines = [];
    this.headerBytes = 0;
  }
}
