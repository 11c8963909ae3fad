// Cursors of the decision log's pages: they carry the seq and the window the first page
// resolved, and refuse to continue a query with other filters or an edited window.
import { openDecisionQuery } from './decision-cursor';

const FIRST = new Date('2026-11-30T12:00:00.000Z');
const LATER = new Date('2026-11-30T13:30:00.000Z');

describe('openDecisionQuery', () => {
  it('continues below the seq with the window the first page resolved, however much later', () => {
    const text = { org: 'acme', since: '24h', until: '2026-11-30T11:00' };
    const first = openDecisionQuery(text, undefined, FIRST);
    expect(first.beforeSeq).toBeUndefined();
    const next = openDecisionQuery(text, first.cursorAfter(42), LATER);
    expect(next).toMatchObject({
      beforeSeq: 42,
      filter: { organization: 'acme', since: new Date('2026-11-29T12:00:00.000Z'), until: new Date('2026-11-30T11:00:00.000Z') },
    });
    expect(openDecisionQuery(text, undefined, LATER).filter.since).toEqual(new Date('2026-11-29T13:30:00.000Z'));
  });

  it('is opaque base64url text', () => {
    expect(openDecisionQuery({}, undefined, FIRST).cursorAfter(7)).toMatch(/^[\w-]+$/);
  });

  it.each([
    [{ org: 'globex', since: '24h' }],
    [{ org: 'acme' }],
    [{ org: 'acme', since: '25h' }],
    [{ org: 'acme', since: '24h', allow: 'true' }],
  ])('refuses a cursor sent with other filters: %j', (other) => {
    const cursor = openDecisionQuery({ org: 'acme', since: '24h' }, undefined, FIRST).cursorAfter(5);
    expect(() => openDecisionQuery(other, cursor, FIRST)).toThrow(/^cursor: it belongs to a query with other filters/);
  });

  it('refuses a cursor whose window or shape was edited', () => {
    const cursor = openDecisionQuery({ since: '24h' }, undefined, FIRST).cursorAfter(5);
    const state = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Record<string, unknown>;
    const edit = (change: Record<string, unknown>) => Buffer.from(JSON.stringify({ ...state, ...change })).toString('base64url');
    expect(() => openDecisionQuery({ since: '24h' }, edit({ since: '2020-01-01T00:00:00.000Z' }), FIRST)).toThrow(/^cursor: it belongs/);
    for (const change of [
      { seq: 0 },
      { seq: 1.5 },
      { since: '24h' },
      { since: '0000-01-01T00:00:00.000Z' },
      { filters: 'x' },
      { extra: 1 },
    ]) {
      expect(() => openDecisionQuery({ since: '24h' }, edit(change), FIRST)).toThrow('cursor: not a cursor this API returned');
    }
  });
});
