// Unit (no etcd: a grpc-js server in this process plays the upstream): how
// the auth gate decides whether the mirror may serve. etcd 3.4 has no
// AuthStatus, so the integration test (auth-mirror.test.ts, real etcd)
// covers the anonymous-read path; this one covers what etcd 3.5+ says with
// AuthStatus, including auth by client-certificate name, where the proxy's
// own reads go through as some user although auth is on.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, credentials, Server, ServerCredentials, status, type ServiceDefinition } from '@grpc/grpc-js';
import pino from 'pino';
import { serviceMethods } from '../../src/etcd/proto';
import { AuthGate } from '../../src/auth/auth-gate';

const auth$ = serviceMethods('etcdserverpb.Auth');
const kv$ = serviceMethods('etcdserverpb.KV');

interface Upstream {
  /** null: no AuthStatus (etcd 3.4). */
  authStatus: boolean | null;
  /** Whether an anonymous Range is let through. */
  anonymousReads: boolean;
}

type Callback = (error: { code: status; details: string } | null, response?: object) => void;

describe('auth gate', () => {
  const upstream: Upstream = { authStatus: false, anonymousReads: true };
  let server: Server;
  let client: Client;

  before(async () => {
    server = new Server();
    server.addService({ AuthStatus: auth$.AuthStatus } as unknown as ServiceDefinition, {
      AuthStatus: (_call: unknown, callback: Callback) =>
        upstream.authStatus === null
          ? callback({ code: status.UNIMPLEMENTED, details: 'unknown method AuthStatus for service etcdserverpb.Auth' })
          : callback(null, { enabled: upstream.authStatus }),
    });
    server.addService({ Range: kv$.Range } as unknown as ServiceDefinition, {
      Range: (_call: unknown, callback: Callback) =>
        upstream.anonymousReads ? callback(null, { count: '0' }) : callback({ code: status.INVALID_ARGUMENT, details: 'etcdserver: user name is empty' }),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))),
    );
    client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  });
  after(() => {
    client.close();
    server.forceShutdown();
  });

  const gate = (): AuthGate => new AuthGate(pino({ level: 'silent' }));

  it('takes AuthStatus at its word, even when the proxy itself may read (auth by certificate name)', async () => {
    const g = gate();
    Object.assign(upstream, { authStatus: true, anonymousReads: true });
    await g.probe(client);
    assert.equal(g.isRequired(), true);
    // The mirror's own list going through shows who the proxy is, not that auth is off.
    g.accepted();
    assert.equal(g.isRequired(), true);
    upstream.authStatus = false;
    await g.probe(client);
    assert.equal(g.isRequired(), false);
  });

  it('falls back to an anonymous read on an upstream without AuthStatus', async () => {
    const g = gate();
    Object.assign(upstream, { authStatus: null, anonymousReads: false });
    await g.probe(client);
    assert.equal(g.isRequired(), true);
    upstream.anonymousReads = true;
    await g.probe(client);
    assert.equal(g.isRequired(), false);
  });

  it('changes nothing when the upstream cannot be asked', async () => {
    const g = gate();
    g.refused();
    const nowhere = new Client('127.0.0.1:1', credentials.createInsecure());
    try {
      await g.probe(nowhere);
      assert.equal(g.isRequired(), true);
    } finally {
      nowhere.close();
    }
  });
});
