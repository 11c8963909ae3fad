// Names for prepared (named) statements. A connection keeps a named statement, and its plan,
// for as long as it lives, under that name alone: the name comes from the text, so a text that
// changes (another shape, another timeout, a new version of the code) gets a name of its own
// instead of running a statement prepared from the old text.
import { hash } from 'node:crypto';

/** `portcullis_<kind>_<16 hex of the text's SHA-256>`. */
export function statementName(kind: string, sql: string): string {
  return `portcullis_${kind}_${hash('sha256', sql, 'hex').slice(0, 16)}`;
}
