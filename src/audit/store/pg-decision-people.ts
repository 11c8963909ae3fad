// Finds people in the decision log by what operators know of them: a users.id, an e-mail or a
// token `sub` (`--user`), and, when a filter finds nothing, the subjects and e-mails that look
// like what was typed ("did you mean 'demo|bob'?").
import type { Knex } from 'knex';
import { isUuid } from '../../db/uuid';
import { whereDecisionFilter, type DecisionFilter } from './pg-decision-query-store';

export interface PersonFilter {
  ids: string[];
  subjects: string[];
}

const MATCHES = 5;

/** `%`, `_` and `\` are literal in what the operator typed. */
const likeText = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

export class PgDecisionPeople {
  constructor(private readonly db: Knex) {}

  /**
   * The users a `--user` value names (by id, e-mail in any case, or subject), and the subjects
   * their records carry. The text itself stays a subject too: a token whose `sub` has no users
   * row is recorded with that subject and no user id.
   */
  async resolve(text: string): Promise<PersonFilter> {
    const query = this.db<{ id: string; subject: string }>('users')
      .select('id', 'subject')
      .where('subject', text)
      .orWhereRaw('lower(email) = lower(?)', [text]);
    if (isUuid(text)) void query.orWhere('id', text);
    const rows = await query;
    return { ids: rows.map((row) => row.id), subjects: [...new Set([text, ...rows.map((row) => row.subject)])] };
  }

  /**
   * Subjects of users whose subject or e-mail contains `text` (any case), and subjects
   * containing it among the records `filter` matches without its subject or user.
   */
  async closeMatches(text: string, filter: DecisionFilter): Promise<string[]> {
    const pattern = likeText(text);
    const users = (await this.db('users')
      .select('subject')
      .whereRaw("subject ilike ? escape '\\'", [pattern])
      .orWhereRaw("email ilike ? escape '\\'", [pattern])
      .orderBy('subject')
      .limit(MATCHES)) as { subject: string }[];
    const { subject: _subject, user: _user, ...window } = filter;
    const recorded = (await whereDecisionFilter(this.db('decisions'), window)
      .distinct('subject')
      .whereRaw("subject ilike ? escape '\\'", [pattern])
      .orderBy('subject')
      .limit(MATCHES)) as { subject: string }[];
    // Subjects are what both --subject and --user accept; an e-mail match suggests its user's subject.
    const matches = new Set([...users, ...recorded].map((row) => row.subject));
    matches.delete(text);
    return [...matches].slice(0, MATCHES);
  }
}
