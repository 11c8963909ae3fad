// The filters the `decisions` commands share, from their options to a DecisionFilter: the
// admin API's filters, plus `--user` (a users.id, an e-mail or a token `sub`, resolved in the
// directory) and `--dry-run`.
import type { Command } from 'commander';
import type { Knex } from 'knex';
import { parseDecisionFilter, type FilterText } from '../audit/store/decision-filter';
import { PgDecisionPeople } from '../audit/store/pg-decision-people';
import type { DecisionFilter } from '../audit/store/pg-decision-query-store';
import { InputError } from '../base/errors';

export interface FilterOptions extends FilterText {
  user?: string;
  dryRun?: string;
}

/** --subject, --user, --org, --action, --allow, --code, --since, --until, --dry-run. */
export function filterOptions(command: Command, defaults: { since?: string } = {}): Command {
  return command
    .option('--subject <sub>', "the token's sub")
    .option('--user <id|email|sub>', 'one person: a users.id, an e-mail or a token sub')
    .option('--org <slug>', 'organization slug')
    .option('--action <action>', 'e.g. project:delete')
    .option('--allow <true|false>', 'only allows, or only denials')
    .option('--code <code>', 'the outcome\'s stable code, e.g. missing_permission (README "Decision codes")')
    .option('--since <time>', 'ISO-8601 time (UTC unless it has an offset) or a duration back from now (30m, 24h, 7d)', defaults.since)
    .option('--until <time>', 'ISO-8601 time (UTC unless it has an offset) or a duration back from now')
    .option('--dry-run <true|false>', 'only dry runs (admin evaluate, explain), or only served requests');
}

/** The filter without `--user`, which needs the database (see resolveUser). */
export function parseFilterOptions(options: FilterOptions, defaults: { dryRun?: boolean } = {}): DecisionFilter {
  const { user: _user, dryRun, ...text } = options;
  const filter = parseDecisionFilter(text);
  if (dryRun !== undefined && dryRun !== 'true' && dryRun !== 'false') throw new InputError('--dry-run: must be true or false');
  filter.dryRun = dryRun === undefined ? defaults.dryRun : dryRun === 'true';
  return filter;
}

/** Adds the people `--user` names to the filter. */
export async function resolveUser(filter: DecisionFilter, user: string | undefined, db: Knex): Promise<DecisionFilter> {
  if (user === undefined) return filter;
  if (user.trim() === '' || user.includes('\u0000')) throw new InputError('--user: must be a users.id, an e-mail or a token sub');
  return { ...filter, user: await new PgDecisionPeople(db).resolve(user) };
}

/** "0 rows for 'bob'; did you mean 'demo|bob'?" when a filter by person found nothing. */
export async function suggestPeople(options: FilterOptions, filter: DecisionFilter, db: Knex): Promise<string | undefined> {
  const typed = options.user ?? options.subject;
  if (typed === undefined) return undefined;
  const matches = await new PgDecisionPeople(db).closeMatches(typed, filter);
  const quoted = matches.map((match) => `'${match}'`);
  const alternatives = quoted.length > 1 ? `${quoted.slice(0, -1).join(', ')} or ${quoted[quoted.length - 1]}` : quoted[0];
  return `0 rows for '${typed}'; ${alternatives ? `did you mean ${alternatives}?` : 'no subject or e-mail like it in the directory or in these records'}`;
}
