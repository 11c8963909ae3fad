// The permission grammar and the covering rule the no-escalation guard relies on.
import { canonicalPermissions, holds, isPermission, missingPermissions, permissionProblem } from './permission-grammar';

describe('permission grammar', () => {
  it.each(['project:read', 'project:*', '*', 'credential:delete', 'audit:read', 'my-service:run_job', 'a1:b2'])('accepts %s', (value) => {
    expect(isPermission(value)).toBe(true);
    expect(permissionProblem(value)).toBeNull();
  });

  it.each([
    '',
    'project',
    'project:',
    ':read',
    '*:read',
    '**',
    'project:read:extra',
    'Project:read',
    'project:READ',
    ' project:read',
    'project:read ',
    '1project:read',
    'project:-read',
    'pro ject:read',
    'project:re*',
  ])('refuses %j', (value) => {
    expect(isPermission(value)).toBe(false);
    expect(permissionProblem(value)).toContain('is not a permission');
  });

  it('refuses words longer than 63 characters', () => {
    expect(isPermission(`${'a'.repeat(63)}:read`)).toBe(true);
    expect(isPermission(`${'a'.repeat(64)}:read`)).toBe(false);
  });

  it('orders permissions in code-point order without duplicates', () => {
    expect(canonicalPermissions(['team:read', 'project:*', 'team:read', '*'])).toEqual(['*', 'project:*', 'team:read']);
  });
});

describe('holding a permission', () => {
  const held = (...permissions: string[]) => new Set(permissions);

  it('holds a permission exactly, through resource:* or through *', () => {
    expect(holds(held('project:read'), 'project:read')).toBe(true);
    expect(holds(held('project:*'), 'project:delete')).toBe(true);
    expect(holds(held('*'), 'credential:delete')).toBe(true);
    expect(holds(held('*'), '*')).toBe(true);
  });

  it('does not hold a wider permission through narrower ones', () => {
    expect(holds(held('project:read', 'project:create', 'project:update', 'project:delete'), 'project:*')).toBe(false);
    expect(holds(held('project:*', 'team:*'), '*')).toBe(false);
    expect(holds(held('project:*'), 'projects:read')).toBe(false);
    expect(holds(held('team:read'), 'team:update')).toBe(false);
  });

  it('names exactly the missing permissions, sorted', () => {
    expect(
      missingPermissions(
        ['role:create', 'project:*'],
        ['project:delete', 'credential:delete', 'role:create', 'audit:read', 'credential:delete'],
      ),
    ).toEqual(['audit:read', 'credential:delete']);
    expect(missingPermissions(['*'], ['*', 'credential:delete'])).toEqual([]);
  });
});
