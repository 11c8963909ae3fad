// Canonical UUID text (either case). Values that are not one are never sent to PostgreSQL
// as uuid parameters, where they would raise an error instead of matching nothing.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}
