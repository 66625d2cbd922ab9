// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// Integration (a real etcd and proxy): every file in deploy/ parses, and
// every metric its alert rules and dashboard name is one the proxy exports.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { etcdAndProxy } from '../support/fixture';
import { REPO_ROOT } from '../support/proxy';

const DEPLOY = join(REPO_ROOT, 'deploy');
const METRIC = /\b((?:etcd_cache_proxy|process|nodejs)_[a-z0-9_]+)\b/g;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

function onPath(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

/** The metric names the alert rules of the proxy's own group and the dashboard's queries use. */
function namedMetrics(): Set<string> {
  const names = new Set<string>();
  const alerts = parseAllDocuments(readFileSync(join(DEPLOY, 'prometheus', 'alerts.yml'), 'utf8'))[0]?.toJS() as { groups: { name: string; rules: { expr: string }[] }[] };
  for (const group of alerts.groups.filter((g) => g.name === 'etcd-cache-proxy')) for (const rule of group.rules) for (const m of rule.expr.matchAll(METRIC)) names.add(m[1] ?? '');
  const dashboard = JSON.parse(readFileSync(join(DEPLOY, 'grafana', 'etcd-cache-proxy.json'), 'utf8')) as { panels: { targets: { expr: string }[] }[] };
  for (const panel of dashboard.panels) for (const target of panel.targets) for (const m of target.expr.matchAll(METRIC)) names.add(m[1] ?? '');
  return names;
}

describe('deploy/', () => {
  const both = etcdAndProxy();

  it('holds only files that parse (YAML, JSON)', () => {
    const all = files(DEPLOY);
    assert.ok(all.length >= 9, all.join('\n'));
    for (const file of all) {
      const text = readFileSync(file, 'utf8');
      if (/\.ya?ml$/.test(file)) for (const document of parseAllDocuments(text)) assert.deepEqual(document.errors, [], file);
      if (file.endsWith('.json')) assert.doesNotThrow(() => JSON.parse(text), file);
    }
  });

  it('names only metrics the proxy exports in its alert rules and dashboard', async () => {
    const text = await (await fetch(`${both.proxy.url}/metrics`)).text();
    const exported = new Set<string>();
    for (const line of text.split('\n')) {
      const match = /^# TYPE (\S+) (\S+)/.exec(line);
      if (match === null) continue;
      const [, name = '', type] = match;
      exported.add(name);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(`${name}${suffix}`);
    }
    const named = namedMetrics();
    assert.ok(named.size >= 20, `${named.size} metrics named`);
    assert.deepEqual([...named].filter((name) => !exported.has(name)).sort(), []);
  });

  it('has a systemd unit systemd-analyze accepts', (t) => {
    if (!onPath('systemd-analyze')) {
      t.skip('systemd-analyze not installed here');
      return;
    }
    const result = spawnSync('systemd-analyze', ['verify', join(DEPLOY, 'systemd', 'etcd-cache-proxy.service')], { encoding: 'utf8' });
    // It also complains that /usr/bin/node or /opt/... are missing on a machine without the install; only syntax errors count.
    assert.doesNotMatch(result.stderr, /Unknown (key|section)|Failed to parse/, result.stderr);
  });

  it('has tier drop-ins (regional, edge) systemd-analyze accepts on the unit', (t) => {
    if (!onPath('systemd-analyze')) {
      t.skip('systemd-analyze not installed here');
      return;
    }
    for (const dropIn of ['regional.conf', 'edge.conf']) {
      // Where systemd looks for them: <unit>.d/ next to the unit, on the unit path.
      const dir = mkdtempSync(join(tmpdir(), 'ecp-systemd-'));
      try {
        const unit = join(dir, 'etcd-cache-proxy.service');
        writeFileSync(unit, readFileSync(join(DEPLOY, 'systemd', 'etcd-cache-proxy.service')));
        mkdirSync(`${unit}.d`);
        writeFileSync(join(`${unit}.d`, dropIn), readFileSync(join(DEPLOY, 'systemd', dropIn)));
        const result = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` } });
        assert.doesNotMatch(result.stderr, /Unknown (key|section)|Failed to parse|Invalid/, `${dropIn}: ${result.stderr}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it('has alert rules promtool accepts', (t) => {
    if (!onPath('promtool')) {
      t.skip('promtool not installed here');
      return;
    }
    const result = spawnSync('promtool', ['check', 'rules', join(DEPLOY, 'prometheus', 'alerts.yml')], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stdout + result.stderr);
  });

  it('has a Prometheus configuration promtool accepts, with the rules where the container mounts them', (t) => {
    if (!onPath('promtool')) {
      t.skip('promtool not installed here');
      return;
    }
    // The file names the rules by their path inside the Prometheus container; point it at the repository's copy.
    const dir = mkdtempSync(join(tmpdir(), 'ecp-prometheus-'));
    try {
      const config = readFileSync(join(DEPLOY, 'prometheus', 'prometheus.yml'), 'utf8');
      assert.match(config, /\/etc\/prometheus\/alerts\.yml/);
      writeFileSync(join(dir, 'prometheus.yml'), config.replace('/etc/prometheus/alerts.yml', join(DEPLOY, 'prometheus', 'alerts.yml')));
      const result = spawnSync('promtool', ['check', 'config', join(dir, 'prometheus.yml')], { encoding: 'utf8' });
      assert.equal(result.status, 0, result.stdout + result.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
