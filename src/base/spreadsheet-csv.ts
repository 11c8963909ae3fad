// CSV cells for people's spreadsheets (the console's and the CLI's decision lists): RFC 4180
// quoting, a list joined with "; ", and a leading quote before text a spreadsheet would run as
// a formula (=, +, -, @, tab, CR). Not lossless: the audit export has its own cells for that.
const FORMULA_START = /^[=+\-@\t\r]/;

/** One cell: text as it is, numbers and booleans as JSON writes them, null or undefined empty. */
export function spreadsheetCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const joined = Array.isArray(value) ? value.join('; ') : typeof value === 'string' ? value : JSON.stringify(value);
  const text = FORMULA_START.test(joined) ? `'${joined}` : joined;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
