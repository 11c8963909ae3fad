// The directory change listener's PostgreSQL backends, of the test's own database only: the test
// databases share one server, and other suites' gateways listen there too.
import type { Knex } from 'knex';
import { LISTENER_APPLICATION_NAME } from '../../src/directory/change-listener';

export async function listenerPids(db: Knex): Promise<number[]> {
  const { rows } = await db.raw<{ rows: { pid: number }[] }>(
    'select pid from pg_stat_activity where application_name = ? and datname = current_database()',
    [LISTENER_APPLICATION_NAME],
  );
  return rows.map((row) => row.pid);
}
