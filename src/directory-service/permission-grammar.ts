// What a role may carry: permissions shaped `resource:verb`, `resource:*` or `*` (design §1),
// and when one set of permissions covers another, the same way the policy grants (R4).
// Only the shape is checked, not the design's vocabulary: operators add routes with their own
// actions (`routes:` in the config), and a role must be able to grant them.

/** Lower-case words: a letter, then letters, digits, `-` or `_` (at most 63 characters). */
const WORD = '[a-z][a-z0-9_-]{0,62}';
const PERMISSION = new RegExp(`^(?:\\*|${WORD}:(?:${WORD}|\\*))$`);

/** More than any real role needs; a bound keeps role rows and subjects small. */
export const MAX_PERMISSIONS_PER_ROLE = 100;

export function isPermission(value: string): boolean {
  return PERMISSION.test(value);
}

/** The one-line reason a value is not a permission, or null when it is one. */
export function permissionProblem(value: string): string | null {
  if (isPermission(value)) return null;
  return `'${value}' is not a permission: use resource:verb, resource:* or * (lower-case words: a letter, then letters, digits, '-' or '_')`;
}

/** Duplicates removed, in code-point order: the order the gateway's subject lists them in. */
export function canonicalPermissions(permissions: readonly string[]): string[] {
  return [...new Set(permissions)].sort();
}

/** A permission is held exactly, through `resource:*` of its resource, or through `*`. */
export function holds(held: ReadonlySet<string>, permission: string): boolean {
  if (held.has(permission) || held.has('*')) return true;
  const colon = permission.indexOf(':');
  return colon > 0 && held.has(`${permission.slice(0, colon)}:*`);
}

/** The requested permissions that `held` does not cover, without duplicates, sorted. */
export function missingPermissions(held: Iterable<string>, requested: readonly string[]): string[] {
  const heldSet = new Set(held);
  return canonicalPermissions(requested.filter((permission) => !holds(heldSet, permission)));
}
