// The subject and the facts of one request in one statement, for a request that has neither
// cached (without caches, every request): two statements cost two hand-overs to PostgreSQL (on a loopback socket, most of the uncached
// request's main thread; `BENCHMARKS.md`, fourth round) and PostgreSQL twice the per-statement
// work. The same SQL as PgSubjectLoader's and PgFactsLoader's, so the answers are theirs, read
// in one snapshot (a test compares them resource by resource).
import type { Knex } from 'knex';
import { DependencyError } from '../base/errors';
import { statementName } from '../db/statement-name';
import type { Resource } from '../routes/route';
import { readAtVersion } from './directory-version';
import { ORG_CTE, factColumns, factSelectList } from './pg-facts-loader';
import { SUBJECT_CTES, SUBJECT_FROM, SUBJECT_SELECT, subjectFromRow, type SubjectRow } from './pg-subject-loader';
import type { DirectoryReader, Facts, Subject } from './subject';

export class PgDirectoryReader implements DirectoryReader {
  /** Statement names by SQL text: the subject's part costs more to plan than to run, so each shape is prepared once per connection. */
  private readonly names = new Map<string, string>();

  constructor(private readonly db: Knex | Knex.Transaction) {}

  async load(sub: string, resource: Resource, action: string): Promise<{ subject: Subject; facts: Facts }> {
    const columns = factColumns(resource, action);
    const factNames = columns.map((column) => column.name);
    // Facts are aliased so no fact can take a subject column's name.
    const sql = `with ${ORG_CTE},${SUBJECT_CTES}
${SUBJECT_SELECT}${columns.length > 0 ? `,\n${factSelectList(columns.map((column) => ({ ...column, name: `fact_${column.name}` })))}` : ''}
${SUBJECT_FROM}`;
    const bindings: (string | null)[] = [resource.org ?? null, sub, ...columns.flatMap((column) => column.bindings)];
    let row: (SubjectRow & Record<string, unknown>) | undefined;
    try {
      ({
        rows: [row],
      } = await this.db.raw<{ rows: (SubjectRow & Record<string, unknown>)[] }>(sql, bindings).options({ name: this.nameOf(sql) }));
    } catch (error) {
      throw new DependencyError('the directory database is unavailable: could not load the caller and the facts of the request', {
        cause: error,
      });
    }
    if (!row) throw new DependencyError('the directory database returned no row for the caller and the facts');
    const subject = subjectFromRow(sub, row);
    if (factNames.length === 0) return { subject, facts: {} };
    const facts: Facts = {};
    for (const name of factNames) facts[name] = row[`fact_${name}`] as Record<string, unknown>;
    return { subject, facts: readAtVersion(facts, row.directory_version) };
  }

  private nameOf(sql: string): string {
    let name = this.names.get(sql);
    if (name === undefined) {
      name = statementName('directory', sql);
      // The shapes are few (which facts a route's resource needs, and whether ids are uuids); bounded all the same.
      if (this.names.size < 1_000) this.names.set(sql, name);
    }
    return name;
  }
}
