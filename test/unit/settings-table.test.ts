// Unit test (no network): the settings table is whole and says each thing once.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config';
import { diffConfig } from '../../src/config-diff';
import { defaultOf, describeSettings, envName, fileKey, LIVE_FIELDS, SETTING_ROWS, shownDefault } from '../../src/settings/table';
import { formatDurationMs, parseDurationMs } from '../../src/settings/values';

const defaults = loadConfig({ argv: [], env: {}, readFile: () => '' });

describe('settings table', () => {
  it('feeds every ProxyConfig field, and only those', () => {
    const fed = new Set<string>(SETTING_ROWS.map((setting) => setting.field));
    assert.deepEqual(Object.keys(defaults).filter((field) => !fed.has(field)), [], 'fields no row feeds');
    assert.deepEqual([...fed].filter((field) => !Object.hasOwn(defaults, field)), [], 'rows feeding no field');
  });

  it('says once per field whether a reload applies it', () => {
    const byField = new Map<string, Set<boolean>>();
    for (const setting of SETTING_ROWS) byField.set(setting.field, (byField.get(setting.field) ?? new Set()).add(setting.live));
    assert.deepEqual([...byField].filter(([, live]) => live.size > 1).map(([field]) => field), []);
  });

  it('is where the reload takes its live set from', () => {
    for (const field of LIVE_FIELDS) assert.ok(SETTING_ROWS.some((setting) => setting.field === field && setting.live));
    // A live row's change is applied live, a restart row's waits for a restart.
    const changes = diffConfig(defaults, loadConfig({ argv: ['--log-level', 'debug', '--history', '5'], env: {}, readFile: () => '' }));
    assert.deepEqual(changes, { live: ['logLevel'], needRestart: ['history'] });
  });

  it('shows each default as text that reads back to the same value', () => {
    for (const setting of SETTING_ROWS) {
      const shown = shownDefault(setting.flag);
      if (shown === null) continue;
      assert.deepEqual(setting.parse(shown), defaultOf(setting), `--${setting.flag}: ${shown}`);
    }
  });

  it('puts each flag, its default and its environment variable in the help', () => {
    const lines = describeSettings().split('\n');
    for (const setting of SETTING_ROWS) {
      const at = lines.findIndex((line) => line.startsWith(`  --${setting.flag} `));
      assert.notEqual(at, -1, setting.flag);
      const shown = shownDefault(setting.flag);
      if (shown !== null) assert.ok(lines[at]?.endsWith(`(default ${shown})`), lines[at]);
      assert.equal(lines[at + 1]?.trim(), `env ${envName(setting.flag)}`);
    }
  });

  it('takes every flag but the file name itself as a YAML key', () => {
    assert.deepEqual(SETTING_ROWS.filter((setting) => fileKey(setting.flag) === null).map((setting) => setting.flag), ['config-file']);
  });
});

describe('settings types', () => {
  it('import nothing from src/ (every layer may take them)', () => {
    const text = readFileSync(resolve(__dirname, '..', '..', 'src', 'settings', 'types.ts'), 'utf8');
    assert.deepEqual([...text.matchAll(/from\s*'([^']+)'/g)].map((match) => match[1]).filter((spec) => !spec?.startsWith('node:')), []);
  });
});

describe('formatDurationMs', () => {
  it("writes durations as the flags' defaults were always written", () => {
    assert.deepEqual([100, 3000, 30_000, 60_000, 300_000, 600_000, 86_400_000].map(formatDurationMs), ['100ms', '3s', '30s', '60s', '5m', '10m', '24h']);
    for (const ms of [1, 1500, 90_000, 61 * 3_600_000]) assert.equal(parseDurationMs(formatDurationMs(ms)), ms);
  });
});
