// Row shapes for the tests that write the database with plain Knex, which types rows as `any`:
// `(await insert(row).returning('id')) as Inserted` says what an insert of one row resolves to.

/** The one row an insert returned (by default its id): PostgreSQL returns exactly the rows it inserted. */
export type Inserted<Row = { id: string }> = [Row];

/** A row of organization_members, read so that a test can put it back as it was. */
export interface MembershipRow {
  organization_id: string;
  user_id: string;
  role_id: string;
  created_at: Date;
}
