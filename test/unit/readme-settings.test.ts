// Unit test (no network): the README's configuration table says what the
// settings table in code says. Each README row names one flag; its environment
// variable and its default must be the code's, every setting in code has a
// row, and no row names a flag the proxy does not take.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { envName, SETTING_ROWS, shownDefault, type SettingFlag } from '../../src/settings/table';

interface ReadmeRow {
  readonly line: number;
  readonly cells: readonly string[];
}

/** The table rows of README.md's "## Configuration" section (not "## Configuration grayscale"). */
function configurationRows(): ReadmeRow[] {
  const lines = readFileSync(resolve(__dirname, '..', '..', 'README.md'), 'utf8').split('\n');
  const start = lines.indexOf('## Configuration');
  assert.notEqual(start, -1, 'README.md has no "## Configuration" section');
  const rows: ReadmeRow[] = [];
  for (let i = start + 1; i < lines.length && !(lines[i] ?? '').startsWith('## '); i++) {
    const text = lines[i] ?? '';
    if (!text.startsWith('| `--')) continue;
    // A cell may hold `|` only inside backticks, which no row needs: split on every bar.
    rows.push({ line: i + 1, cells: text.slice(1, text.endsWith('|') ? -1 : undefined).split('|').map((cell) => cell.trim()) });
  }
  return rows;
}

const rows = configurationRows();
const known = new Set<string>(SETTING_ROWS.map((setting) => setting.flag));

test('the README lists settings, one flag a row', () => {
  assert.ok(rows.length > 0, 'no rows found in the Configuration table');
  const wrong = rows.filter((row) => row.cells.length !== 4 || !/^`--[a-z0-9-]+`$/.test(row.cells[0] ?? '')).map((row) => `README.md:${row.line}: ${row.cells[0]}`);
  assert.deepEqual(wrong, []);
});

const flagOf = (row: ReadmeRow): string => (row.cells[0] ?? '').replace(/^`--|`$/g, '');

test('every README row names a flag the proxy takes, once', () => {
  const flags = rows.map(flagOf);
  assert.deepEqual(flags.filter((flag) => !known.has(flag)), [], 'README rows for flags that do not exist');
  assert.deepEqual(flags.filter((flag, i) => flags.indexOf(flag) !== i), [], 'flags with two README rows');
});

test('every setting in code has a README row', () => {
  const listed = new Set(rows.map(flagOf));
  assert.deepEqual(SETTING_ROWS.map((setting) => setting.flag).filter((flag) => !listed.has(flag)), []);
});

test("each README row's environment variable is the code's", () => {
  const wrong = rows.filter((row) => known.has(flagOf(row)) && row.cells[1] !== `\`${envName(flagOf(row))}\``).map((row) => `--${flagOf(row)}: README ${row.cells[1]}, code ${envName(flagOf(row))}`);
  assert.deepEqual(wrong, []);
});

test("each README row's default is the code's", () => {
  const wrong: string[] = [];
  for (const row of rows) {
    const flag = flagOf(row);
    if (!known.has(flag)) continue;
    const cell = row.cells[2] ?? '';
    const shown = shownDefault(flag as SettingFlag);
    // A default the code has is written first, as a value in backticks (a note may follow);
    // a setting without one is described in words ("none", "the system CAs"), never as a value.
    if (shown === null ? cell.startsWith('`') : !cell.startsWith(`\`${shown}\``)) wrong.push(`--${flag}: README ${cell}, code ${shown ?? '(no default value)'}`);
  }
  assert.deepEqual(wrong, []);
});

/**
 * The flags README.md's "## Reloading the configuration" lists as taken over
 * live (its bullet list), a trailing `*` standing for every flag so named.
 */
function reloadSectionFlags(): string[] {
  const readme = readFileSync(resolve(__dirname, '..', '..', 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Reloading the configuration\n');
  assert.notEqual(start, -1, 'README.md has no "## Reloading the configuration" section');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const list = section.slice(section.indexOf('\n* '), section.indexOf('\n\n', section.indexOf('\n* ')));
  return [...list.matchAll(/`(--[a-z0-9-]+\*?)`/g)].map((match) => match[1] ?? '');
}

test("the README's reload section lists exactly the settings a reload takes over", () => {
  const listed = reloadSectionFlags();
  const covers = (flag: string): boolean => listed.some((entry) => (entry.endsWith('*') ? `--${flag}`.startsWith(entry.slice(0, -1)) : entry === `--${flag}`));
  const live = SETTING_ROWS.filter((row) => row.live).map((row) => row.flag);
  assert.deepEqual(live.filter((flag) => !covers(flag)), [], 'live settings the README does not list');
  const notLive = listed.filter((entry) => !live.some((flag) => (entry.endsWith('*') ? `--${flag}`.startsWith(entry.slice(0, -1)) : entry === `--${flag}`)));
  assert.deepEqual(notLive, [], 'flags the README lists as live that a reload does not take over');
});
