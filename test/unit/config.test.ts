// Unit: configuration resolution (no network, no disk).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, advertisedUrlFor, loadConfig, parseDurationMs } from '../../src/config';

const noFile = (): string => {
  throw new Error('no such file');
};

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  assert.fail('expected a ConfigError');
}

describe('loadConfig', () => {
  it('has defaults that work on a fresh machine', () => {
    const config = loadConfig({ argv: [], env: {}, readFile: noFile });
    assert.deepEqual(
      config.endpoints.map((e) => e.target),
      ['ipv4:127.0.0.1:2379'],
    );
    assert.deepEqual(config.listenAddr, { host: '127.0.0.1', port: 23790 });
    assert.equal(config.advertiseClientUrl, null);
    assert.equal(config.metricsAddr, null);
    assert.equal(config.logLevel, 'info');
    assert.equal(config.shutdownGraceMs, 5000);
    assert.equal(config.writeRejectHttpStatus, 501);
    assert.ok(Object.isFrozen(config));
  });

  it('takes flags over environment over file over defaults', () => {
    const file = ['endpoints: [http://10.0.0.1:2379, http://10.0.0.2:2379]', 'log-level: debug', 'data-dir: /from/file', 'listen-addr: 127.0.0.1:1111'].join('\n');
    const config = loadConfig({
      argv: ['--config-file=/etc/proxy.yaml', '--log-level', 'error'],
      env: { ETCD_CACHE_PROXY_LOG_LEVEL: 'warn', ETCD_CACHE_PROXY_DATA_DIR: '/from/env' },
      readFile: (path) => {
        assert.equal(path, '/etc/proxy.yaml');
        return file;
      },
    });
    assert.equal(config.logLevel, 'error');
    assert.equal(config.dataDir, '/from/env');
    assert.deepEqual(config.listenAddr, { host: '127.0.0.1', port: 1111 });
    assert.deepEqual(
      config.endpoints.map((e) => e.url),
      ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'],
    );
    assert.equal(config.configFile, '/etc/proxy.yaml');
  });

  it('reads the config file named in the environment', () => {
    const config = loadConfig({
      argv: [],
      env: { ETCD_CACHE_PROXY_CONFIG_FILE: '/x.yaml' },
      readFile: () => 'metrics-addr: http://127.0.0.1:9379\n',
    });
    assert.deepEqual(config.metricsAddr, { host: '127.0.0.1', port: 9379 });
  });

  it('accepts comma lists and repeated --endpoints, with or without a scheme', () => {
    const config = loadConfig({
      argv: ['--endpoints', 'http://127.0.0.1:1,127.0.0.1:2', '--endpoints=[::1]:3', '--endpoints', 'etcd.local:4'],
      env: {},
      readFile: noFile,
    });
    assert.deepEqual(
      config.endpoints.map((e) => e.target),
      ['ipv4:127.0.0.1:1', 'ipv4:127.0.0.1:2', 'ipv6:[::1]:3', 'dns:etcd.local:4'],
    );
  });

  it('takes mirror prefixes from repeated flags, comma lists and YAML lists; none means everything', () => {
    assert.deepEqual(loadConfig({ argv: [], env: {}, readFile: noFile }).mirrorPrefixes, []);
    const flags = loadConfig({ argv: ['--mirror-prefix', '/apisix/,/gw/', '--mirror-prefix=/other/'], env: {}, readFile: noFile });
    assert.deepEqual(flags.mirrorPrefixes, ['/apisix/', '/gw/', '/other/']);
    const file = loadConfig({ argv: ['--config-file', 'c.yaml'], env: {}, readFile: () => 'mirror-prefix:\n  - /apisix/\n  - /gw/\n' });
    assert.deepEqual(file.mirrorPrefixes, ['/apisix/', '/gw/']);
    assert.match(problemsOf(() => loadConfig({ argv: ['--mirror-prefix', ','], env: {}, readFile: noFile }))[0] ?? '', /non-empty prefix/);
  });

  it("takes the member source in etcd's order: --discovery-srv, then --initial-cluster, then --endpoints", () => {
    const base = { env: {}, readFile: noFile };
    assert.deepEqual(loadConfig({ ...base, argv: [] }).discovery, { kind: 'endpoints' });
    assert.equal(loadConfig({ ...base, argv: [] }).syncIntervalMs, 30_000);
    const cluster = loadConfig({ ...base, argv: ['--initial-cluster', 'a=http://10.0.0.1:2380,b=http://10.0.0.2:2380', '--initial-cluster', 'c=http://10.0.0.3:2380', '--sync-interval', '5s'] });
    assert.deepEqual(cluster.discovery, {
      kind: 'initial-cluster',
      peers: [
        { name: 'a', peerUrl: 'http://10.0.0.1:2380' },
        { name: 'b', peerUrl: 'http://10.0.0.2:2380' },
        { name: 'c', peerUrl: 'http://10.0.0.3:2380' },
      ],
    });
    assert.equal(cluster.syncIntervalMs, 5_000);
    const srv = loadConfig({ ...base, argv: ['--discovery-srv', 'example.com.', '--discovery-srv-name', 'blue', '--initial-cluster', 'a=http://10.0.0.1:2380', '--discovery-dns-server', '127.0.0.1:5353'] });
    assert.deepEqual(srv.discovery, { kind: 'srv', domain: 'example.com', serviceName: 'blue', dnsServer: '127.0.0.1:5353' });
    const env = loadConfig({ argv: [], env: { ETCD_CACHE_PROXY_DISCOVERY_SRV: 'etcd.internal' }, readFile: noFile });
    assert.equal(env.discovery.kind, 'srv');
  });

  it('rejects malformed discovery settings, each named', () => {
    const problems = problemsOf(() =>
      loadConfig({
        argv: ['--initial-cluster', 'nameless,b=ftp://x:1', '--discovery-srv-name', 'bad name', '--sync-interval', '10ms'],
        env: {},
        readFile: noFile,
      }),
    );
    assert.ok(problems.some((p) => p.startsWith('--initial-cluster=') && p.includes("'nameless' is not name=peerURL")), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('--discovery-srv-name=')), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('--sync-interval=')), problems.join('\n'));
    assert.ok(problems.includes('--discovery-srv-name has no effect without --discovery-srv'), problems.join('\n'));
    const domain = problemsOf(() => loadConfig({ argv: ['--discovery-srv', 'not a domain'], env: {}, readFile: noFile }));
    assert.ok(domain.some((p) => p.includes('not a DNS domain name')));
  });

  it('lists every problem at once', () => {
    const problems = problemsOf(() =>
      loadConfig({
        argv: ['--log-level=loud', '--listen-addr=nowhere', '--endpoints=ftp://127.0.0.1:2379', '--shutdown-grace=soon', '--cert-file=/nonexistent.crt', '--write-reject-http-status=200'],
        env: {},
        readFile: noFile,
      }),
    );
    assert.equal(problems.length, 6, problems.join('\n'));
    assert.match(problems.join('\n'), /write-reject-http-status=200: must be an HTTP error status/);
    assert.match(problems.join('\n'), /log-level=loud: must be one of/);
    assert.match(problems.join('\n'), /listen-addr=nowhere: expected host:port/);
    assert.match(problems.join('\n'), /scheme must be http or https/);
    assert.match(problems.join('\n'), /--cert-file=\/nonexistent.crt: not a readable file/);
    assert.match(problems.join('\n'), /shutdown-grace=soon: not a duration/);
  });

  it('rejects unknown flags, stray arguments and unknown file keys', () => {
    assert.match(problemsOf(() => loadConfig({ argv: ['--endpoint', 'x'], env: {}, readFile: noFile }))[0] ?? '', /unknown flag --endpoint/);
    assert.match(problemsOf(() => loadConfig({ argv: ['oops'], env: {}, readFile: noFile }))[0] ?? '', /unexpected argument 'oops'/);
    const fileProblems = problemsOf(() =>
      loadConfig({ argv: ['--config-file=c.yaml'], env: {}, readFile: () => 'endpoint: x\nlisten-addr: [1, 2]\n' }),
    );
    assert.equal(fileProblems.length, 2, fileProblems.join('\n'));
    assert.match(fileProblems[0] ?? '', /unknown key 'endpoint'/);
    assert.match(fileProblems[1] ?? '', /'listen-addr' must be a string/);
  });

  it('reports an unreadable or malformed config file', () => {
    assert.match(problemsOf(() => loadConfig({ argv: ['--config-file=gone.yaml'], env: {}, readFile: noFile }))[0] ?? '', /gone.yaml: no such file/);
    assert.match(problemsOf(() => loadConfig({ argv: ['--config-file=bad.yaml'], env: {}, readFile: () => 'a: [' }))[0] ?? '', /not valid YAML/);
    assert.match(problemsOf(() => loadConfig({ argv: ['--config-file=list.yaml'], env: {}, readFile: () => '- a\n- b\n' }))[0] ?? '', /expected a mapping/);
  });
});

describe('parseDurationMs', () => {
  it('reads Go-style durations', () => {
    assert.equal(parseDurationMs('500ms'), 500);
    assert.equal(parseDurationMs('3s'), 3000);
    assert.equal(parseDurationMs('1m30s'), 90_000);
    assert.equal(parseDurationMs('1.5s'), 1500);
    assert.throws(() => parseDurationMs('3'), /not a duration/);
    assert.throws(() => parseDurationMs('3s junk'), /not a duration/);
  });
});

describe('advertisedUrlFor', () => {
  it('uses the bound address, with loopback for a wildcard, unless one is configured', () => {
    assert.equal(advertisedUrlFor(null, { host: '127.0.0.1', port: 4000 }), 'http://127.0.0.1:4000');
    assert.equal(advertisedUrlFor(null, { host: '0.0.0.0', port: 4000 }), 'http://127.0.0.1:4000');
    assert.equal(advertisedUrlFor(null, { host: '::1', port: 4000 }), 'http://[::1]:4000');
    assert.equal(advertisedUrlFor('http://proxy.local:23790', { host: '0.0.0.0', port: 4000 }), 'http://proxy.local:23790');
  });
});
