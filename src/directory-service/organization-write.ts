// The PostgreSQL integrity errors a store's write into an organization can meet, as the 409s
// they mean: a name a concurrent request took first, or an organization deleted meanwhile.
import { ConflictError } from '../base/errors';

const UNIQUE_VIOLATION = '23505';
const FOREIGN_KEY_VIOLATION = '23503';

/**
 * Runs a write into an organization: a unique violation (a lost race on the name) becomes
 * `taken(cause)`; a foreign-key violation means the organization was deleted by a transaction
 * that committed after it was resolved. Other errors pass through unchanged.
 */
export async function writeInOrganization<T>(write: () => Promise<T>, taken: (cause: unknown) => ConflictError): Promise<T> {
  try {
    return await write();
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === UNIQUE_VIOLATION) throw taken(error);
    if (code === FOREIGN_KEY_VIOLATION) throw new ConflictError('the organization no longer exists', { cause: error });
    throw error;
  }
}
