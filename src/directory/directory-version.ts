// The directory_version a read model's answer was read at (migration ...011), kept beside the
// answer rather than in it: subjects and facts are the policy input (design §3.4), the version
// is for the decision record. A cached answer is the same object, so it keeps its version.
const versions = new WeakMap<object, number>();

/** Marks `value` as read at `version` (the text or number PostgreSQL returned for the bigint); returns it. */
export function readAtVersion<T extends object>(value: T, version: string | number | null | undefined): T {
  if (version !== null && version !== undefined) versions.set(value, Number(version));
  return value;
}

/** The newest version among the values that carry one (null when none does). */
export function directoryVersionOf(...values: readonly object[]): number | null {
  let newest: number | null = null;
  for (const value of values) {
    const version = versions.get(value);
    if (version !== undefined && (newest === null || version > newest)) newest = version;
  }
  return newest;
}
