// Unit: which reloaded settings a running proxy applies and which wait for a restart.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config';
import { diffConfig } from '../../src/config-diff';

const config = (argv: string[]) => loadConfig({ argv, env: {}, readFile: () => '' });

describe('diffConfig', () => {
  it('finds nothing to do when nothing changed', () => {
    assert.deepEqual(diffConfig(config(['--mode', 'readonly']), config(['--mode', 'readonly'])), { live: [], needRestart: [] });
  });

  it('applies discovery, mode, refusal status, log level and sync interval live; listener, data dir and mirror scope need a restart', () => {
    const changes = diffConfig(
      config([]),
      config(['--endpoints', 'http://10.0.0.9:2379', '--mode', 'readonly', '--log-level', 'debug', '--sync-interval', '5s', '--write-reject-http-status', '429', '--listen-addr', '127.0.0.1:1', '--data-dir', '/elsewhere', '--mirror-prefix', '/apisix']),
    );
    assert.deepEqual(changes.live.sort(), ['endpoints', 'logLevel', 'mode', 'syncIntervalMs', 'writeRejectHttpStatus']);
    assert.deepEqual(changes.needRestart.sort(), ['dataDir', 'listenAddr', 'mirrorPrefixes']);
  });

  it('treats discovery source changes as live', () => {
    const changes = diffConfig(config([]), config(['--initial-cluster', 'a=http://10.0.0.1:2380']));
    assert.deepEqual(changes.live, ['discovery']);
  });
});
