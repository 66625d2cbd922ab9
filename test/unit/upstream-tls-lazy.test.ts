// Unit (temporary files, no network): TLS material is built at start only
// when files are configured (an unreadable file is then a start-up error);
// without files, nothing can fail to load, and the upstream credentials (the
// system's CAs, about 1.5 MB of OpenSSL's native memory) are built only when
// an https member first asks for them. A proxy whose members are all http://
// never builds them.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, describe, it, mock } from 'node:test';
import { ChannelCredentials } from '@grpc/grpc-js';
import pino from 'pino';
import type { UpstreamTlsConfig } from '../../src/settings/types';
import { watchUpstreamCredentials } from '../../src/tls/upstream-tls';
import { WatchedMaterial } from '../../src/tls/watched-material';

const log = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'ecp-tls-lazy-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const NO_FILES: UpstreamTlsConfig = { caFile: null, certFile: null, keyFile: null, insecureSkipVerify: false };

describe('TLS material built when needed', () => {
  it('without files, the upstream credentials (and their secure context) are built on first use, once', () => {
    const contexts = mock.method(tls, 'createSecureContext');
    try {
      const material = watchUpstreamCredentials(NO_FILES, log);
      assert.equal(contexts.mock.callCount(), 0, 'no secure context at start');
      const credentials = material.current();
      assert.ok(credentials instanceof ChannelCredentials && credentials._isSecure(), 'TLS credentials');
      assert.equal(contexts.mock.callCount(), 1, 'built on first use');
      assert.equal(material.current(), credentials, 'and kept');
      assert.equal(contexts.mock.callCount(), 1);
      material.close();
    } finally {
      contexts.mock.restore();
    }
  });

  it('with files, builds at start, and an unreadable file is an error there', () => {
    const ca = join(dir, 'ca.pem');
    writeFileSync(ca, 'not read by this builder');
    let builds = 0;
    const material = new WatchedMaterial('test', [ca, null], () => (builds += 1), log);
    assert.equal(builds, 1, 'built at start');
    assert.equal(material.current(), 1);
    assert.equal(builds, 1);
    material.close();
    assert.throws(() => watchUpstreamCredentials({ ...NO_FILES, caFile: join(dir, 'missing.pem') }, log), /ENOENT/);
  });
});
