// Users and their pictures in the directory (design §3.1 plus users.email_verified and
// user_pictures): the SQL of the users resource. Takes a pool or a transaction.
import type { Knex } from 'knex';

export interface UserRow {
  id: string;
  subject: string;
  email: string | null;
  email_verified: boolean;
  display_name: string | null;
  picture_url: string | null;
  created_at: Date;
  updated_at: Date;
}

export interface Picture {
  content_type: string;
  data: Buffer;
  updated_at: Date;
}

const COLUMNS = ['id', 'subject', 'email', 'email_verified', 'display_name', 'picture_url', 'created_at', 'updated_at'];

export const picturePath = (userId: string) => `/users/${userId}/picture`;

export class UserStore {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  findById(id: string): Promise<UserRow | undefined> {
    return this.db('users').where({ id }).first(COLUMNS);
  }

  findBySubject(subject: string): Promise<UserRow | undefined> {
    return this.db('users').where({ subject }).first(COLUMNS);
  }

  /** The row, locked until the transaction ends (read-modify-write under If-Match). */
  lockById(id: string): Promise<UserRow | undefined> {
    return this.db('users').where({ id }).forUpdate().first(COLUMNS);
  }

  lockBySubject(subject: string): Promise<UserRow | undefined> {
    return this.db('users').where({ subject }).forUpdate().first(COLUMNS);
  }

  /** Inserts the user unless the subject exists (a concurrent registration); undefined then. */
  async insertIfAbsent(user: {
    subject: string;
    email: string | null;
    email_verified: boolean;
    display_name: string | null;
  }): Promise<UserRow | undefined> {
    const [row] = await this.db('users').insert(user).onConflict('subject').ignore().returning<UserRow[]>(COLUMNS);
    return row;
  }

  async update(id: string, fields: Partial<Pick<UserRow, 'email' | 'email_verified' | 'display_name' | 'picture_url'>>): Promise<UserRow> {
    const [row] = await this.db('users')
      .where({ id })
      .update({ ...fields, updated_at: this.db.fn.now() })
      .returning<UserRow[]>(COLUMNS);
    return row!;
  }

  async savePicture(userId: string, contentType: string, data: Buffer): Promise<void> {
    await this.db('user_pictures')
      .insert({ user_id: userId, content_type: contentType, data })
      .onConflict('user_id')
      .merge({ content_type: contentType, data, updated_at: this.db.fn.now() });
  }

  picture(userId: string): Promise<Picture | undefined> {
    return this.db('user_pictures').where({ user_id: userId }).first('content_type', 'data', 'updated_at');
  }
}
