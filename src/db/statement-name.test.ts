import { describe, expect, it } from '@jest/globals';
import { statementName } from './statement-name';

describe('statementName', () => {
  it('names a statement by its kind and its text, so a changed text gets a name of its own', () => {
    const name = statementName('directory', 'select 1');
    expect(name).toMatch(/^portcullis_directory_[0-9a-f]{16}$/);
    expect(statementName('directory', 'select 1')).toBe(name);
    expect(statementName('directory', 'select 2')).not.toBe(name);
  });
});
