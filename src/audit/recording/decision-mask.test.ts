// audit.mask: JSON pointers erase values from the stored input (and resource), without
// touching the objects the request pipeline (or a cache) still holds.
import { ConfigError } from '../../base/errors';
import { DecisionMask } from './decision-mask';
import type { DecisionRecord } from '../decision-record';

const base = (input: unknown, resource: Record<string, unknown> = { type: 'project', org: 'acme', project: 'api' }): DecisionRecord => ({
  id: 'id',
  time: new Date(0),
  requestId: 'r',
  subject: 's',
  userId: null,
  organization: 'acme',
  action: 'project:read',
  resource,
  method: 'GET',
  path: '/',
  allow: true,
  status: 200,
  reasons: [],
  policyRevision: null,
  evalLatencyUs: null,
  input,
});

describe('DecisionMask', () => {
  it('removes the value a pointer names and leaves the original alone', () => {
    const input = { request: { headers: { cookie: 'session=secret', accept: 'json' } }, subject: { email: 'a@example.com' } };
    const masked = new DecisionMask(['/request/headers/cookie', '/subject/email']).apply(base(input));
    expect(masked.input).toEqual({ request: { headers: { accept: 'json' } }, subject: {} });
    expect(input.request.headers.cookie).toBe('session=secret');
    expect(input.subject.email).toBe('a@example.com');
  });

  it('matches every member with *, keeps arrays their length, and unescapes ~1 and ~0', () => {
    const input = {
      subject: { memberships: { acme: { permissions: ['*'], role: 'admin' }, globex: { permissions: ['x'], role: 'default' } } },
      list: [1, 2],
      'a/b': 1,
      'c~d': 2,
    };
    const masked = new DecisionMask(['/subject/memberships/*/permissions', '/list/0', '/a~1b', '/c~0d']).apply(base(input)).input;
    expect(masked).toEqual({ subject: { memberships: { acme: { role: 'admin' }, globex: { role: 'default' } } }, list: [null, 2] });
  });

  it('masks the record’s resource with pointers under /resource', () => {
    const masked = new DecisionMask(['/resource/project']).apply(base({ resource: { type: 'project', project: 'api' } }));
    expect(masked.resource).toEqual({ type: 'project', org: 'acme' });
    expect(masked.input).toEqual({ resource: { type: 'project' } });
  });

  it('returns the same record when nothing matches', () => {
    const record = base({ a: 1 });
    expect(new DecisionMask(['/request/headers/cookie', '/a/b']).apply(record)).toBe(record);
    expect(new DecisionMask([]).apply(record)).toBe(record);
  });

  it('refuses a pointer that is not one', () => {
    expect(() => new DecisionMask(['request/headers'])).toThrow(ConfigError);
    expect(() => new DecisionMask(['/'])).toThrow(/audit.mask: "\/" is not a JSON pointer to a field/);
  });
});
