import { expect } from '@jest/globals';
import { MultipartPartHeaders, multipartBoundaries, partHeaderNames } from './multipart-part-headers';

describe('multipartBoundaries', () => {
  it.each([
    ['multipart/form-data; boundary=abc', ['abc']],
    ['multipart/form-data; boundary="a b;c"', ['"a b', 'a b;c']],
    ['multipart/form-data; boundary= abc ; charset=utf-8', [' abc ', 'abc']],
    ['multipart/form-data; xboundary=evil; boundary=good', ['evil', 'good']],
    ['multipart/form-data; BOUNDARY=abc,def', ['abc']],
    ['multipart/form-data; boundary', []],
  ])('reads %j as %j', (contentType, expected) => {
    expect(multipartBoundaries(contentType)).toEqual(expected);
  });
});

describe('partHeaderNames', () => {
  it('reads every name parameter of a Content-Disposition, whatever its type', () => {
    expect(partHeaderNames(['Content-Disposition: attachment; filename="f.txt"; name="a"'])).toEqual(['a', 'a', 'a']);
    expect(partHeaderNames(['content-disposition:form-data;NAME=b;name=c'])).toEqual(['b', 'b', 'c', 'c']);
  });

  it('reads a quoted name as Rack (to the next quote), busboy (escapes decoded) and PHP (escaped quotes only) do', () => {
    expect(partHeaderNames(['Content-Disposition: form-data; name="a\\"b\\c"'])).toEqual(['a\\', 'a"bc', 'a"b\\c']);
  });

  it('reads a bare name to a space (PHP) and to a semicolon (Rack)', () => {
    expect(partHeaderNames(['Content-Disposition: form-data; name=_method x; y=z'])).toEqual(['_method', '_method x']);
  });

  it("reads RFC 8187's value after its charset and language", () => {
    expect(partHeaderNames(["Content-Disposition: attachment; name*=UTF-8'en'%5Fmethod"])).toContain('%5Fmethod');
  });

  it('reads a name on a continuation line, and every Content-ID', () => {
    expect(partHeaderNames(['Content-Disposition: form-data;', ' name="a"', 'Content-ID: <b>'])).toEqual(['a', 'a', 'a', '<b>']);
  });

  it('reads no name parameter from a part without a Content-Disposition, nor a filename as a name', () => {
    expect(partHeaderNames(['Content-Type: text/plain; name=a'])).toEqual([]);
    expect(partHeaderNames(['Content-Disposition: form-data; filename=a'])).toEqual([]);
  });
});

describe('MultipartPartHeaders', () => {
  /** The names read from `body` written in chunks of `size` bytes. */
  function namesOf(body: string, size: number, boundaries = ['b']): string[] {
    const scanner = new MultipartPartHeaders(boundaries);
    const names: string[] = [];
    scanner.onName = (name) => names.push(name);
    const bytes = Buffer.from(body, 'latin1');
    for (let start = 0; start < bytes.length; start += size) scanner.write(bytes.subarray(start, start + size));
    scanner.end();
    return [...new Set(names)];
  }

  const body = [
    'preamble',
    '--b',
    'Content-Disposition: form-data; name="one"',
    '',
    'line one\r\n-- b not a delimiter\r\n--c neither',
    '--b\r',
    'Content-ID: two\r',
    '\r',
    '',
    '--b',
    'Content-Disposition: attachment;',
    '\tname=three',
    '',
    'x',
    '--b--',
    '',
  ].join('\n');

  it('reads the headers after each delimiter, LF or CRLF, wherever the chunks are cut', () => {
    for (let size = 1; size <= body.length; size++) expect(namesOf(body, size)).toEqual(['one', 'two', 'three']);
  });

  it('finds a delimiter at the very start of the body and right after a part headers', () => {
    const headersOnly = '--b\nContent-ID: one\n\n--b\nContent-ID: two\n\n';
    for (let size = 1; size <= headersOnly.length; size++) expect(namesOf(headersOnly, size)).toEqual(['one', 'two']);
  });

  it('reads the headers of a part the body ends in', () => {
    expect(namesOf('--b\nContent-ID: last', 4)).toEqual(['last']);
  });

  it('looks for every boundary it is given', () => {
    expect(namesOf('--evil\r\nContent-ID: one\r\n\r\n--good\r\nContent-ID: two\r\n\r\n', 3, ['good', 'evil'])).toEqual(['one', 'two']);
  });

  it('throws when a part headers pass 16 KiB, and not for content of any length', () => {
    expect(() => namesOf(`--b\nX: ${'a'.repeat(16 * 1024)}\n\n`, 100)).toThrow(/16384 bytes/);
    expect(namesOf(`--b\nContent-ID: one\n\n${'a'.repeat(100_000)}\n--b--`, 4096)).toEqual(['one']);
  });
});
