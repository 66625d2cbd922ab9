// Unit test (no network): what an upstream's answers say it is (etcd or an
// etcd-cache-proxy), and how long a loop of proxies a returning call went round.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { PROXY_HEADER } from '../../src/etcd/metadata';
import { LOOP_DETAILS, LOOP_LENGTH_HEADER, loopLength, loopLengthOf } from '../../src/upstream/loop-guard';
import { kindOfError, kindOfHeaders } from '../../src/upstream/upstream-kind';

const withHeader = (name: string, value: string): Metadata => {
  const metadata = new Metadata();
  metadata.set(name, value);
  return metadata;
};

const serviceError = (metadata: Metadata, details = 'x'): ServiceError => Object.assign(new Error(details), { code: status.UNAVAILABLE, details, metadata });

test('headers with the proxy mark are a proxy; headers without it are etcd', () => {
  assert.equal(kindOfHeaders(withHeader(PROXY_HEADER, '1.2.3')), 'proxy');
  assert.equal(kindOfHeaders(withHeader('content-type', 'application/grpc')), 'etcd');
  assert.equal(kindOfHeaders(new Metadata()), 'etcd');
});

test('an error says proxy only when its status carries the mark; otherwise nothing (it may be this side)', () => {
  assert.equal(kindOfError(serviceError(withHeader(PROXY_HEADER, '1.2.3'))), 'proxy');
  assert.equal(kindOfError(serviceError(new Metadata())), 'unknown');
  assert.equal(kindOfError(new Error('no connection')), 'unknown');
  assert.equal(kindOfError({ metadata: { get: () => ['1'] } }), 'unknown', 'only grpc-js metadata is read');
  assert.equal(kindOfError(null), 'unknown');
  assert.equal(kindOfError('boom'), 'unknown');
});

test('loopLength: the proxies a call went through since this one sent it', () => {
  assert.equal(loopLength([], 'a'), 0);
  assert.equal(loopLength(['b'], 'a'), 0, 'not sent by this proxy');
  assert.equal(loopLength(['a'], 'a'), 1, 'this proxy is its own upstream');
  assert.equal(loopLength(['a', 'b'], 'a'), 2, 'a cycle of two');
  assert.equal(loopLength(['e, a', 'b'], 'a'), 2, 'comma-joined markers; an edge before the cycle is not in it');
  assert.equal(loopLength(['e,a,b,c'], 'a'), 3);
});

test('loopLengthOf: what a loop refusal says, 1 when it says nothing usable', () => {
  assert.equal(loopLengthOf(serviceError(withHeader(LOOP_LENGTH_HEADER, '2'), LOOP_DETAILS)), 2);
  assert.equal(loopLengthOf(serviceError(new Metadata(), LOOP_DETAILS)), 1);
  for (const bad of ['0', '-3', 'x', '1e400', '2.5']) assert.equal(loopLengthOf(serviceError(withHeader(LOOP_LENGTH_HEADER, bad), LOOP_DETAILS)), 1, bad);
});
