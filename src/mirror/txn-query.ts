import type { EncodedKeyValue } from '../etcd/kv-bytes';
import { txnReadsOnly } from '../etcd/method-kinds';
import { encodeRangeResponse, encodeResponseHeader, encodeTxnResponse, type EncodedResponseOp } from '../etcd/response-bytes';
import type { MirrorStore } from '../store/store';
import { evaluateRange, validateRange, type RangeRefusal, type WireRangeRequest } from './range-query';

/** etcd's --max-txn-ops default. */
export const MAX_TXN_OPS = 128;

export interface WireCompare {
  result?: 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL' | number;
  target?: 'VERSION' | 'CREATE' | 'MOD' | 'VALUE' | 'LEASE' | number;
  key?: Buffer;
  range_end?: Buffer;
  version?: string;
  create_revision?: string;
  mod_revision?: string;
  value?: Buffer;
  lease?: string;
}
export interface WireRequestOp {
  request_range?: WireRangeRequest;
  request_put?: object;
  request_delete_range?: object;
  request_txn?: WireTxnRequest;
}
export interface WireTxnRequest {
  compare?: WireCompare[];
  success?: WireRequestOp[];
  failure?: WireRequestOp[];
}

const branches = (txn: WireTxnRequest): WireRequestOp[] => [...(txn.success ?? []), ...(txn.failure ?? [])];

/** A Txn whose branches hold only Range ops (nested Txns included) is a read: the one rule that also decides write refusal. */
export function isReadOnlyTxn(txn: WireTxnRequest): boolean {
  return txnReadsOnly(txn);
}

/** Every key range a Txn reads: its compares and the Ranges of both branches, nested Txns included. */
export function txnRanges(txn: WireTxnRequest): { key?: Buffer; range_end?: Buffer }[] {
  return [
    ...(txn.compare ?? []),
    ...branches(txn).flatMap((op) => (op.request_range !== undefined ? [op.request_range] : op.request_txn !== undefined ? txnRanges(op.request_txn) : [])),
  ];
}

/**
 * The key ranges etcd 3.4 checks read permission on for a Txn: its compares
 * and the Ranges of both branches, not those of nested Txns (etcd 3.4 does
 * not look inside them). Null for a Txn with nested ones: the mirror then
 * leaves the decision to etcd rather than copy that gap or answer otherwise.
 */
export function txnPermissionRanges(txn: WireTxnRequest): { key: Buffer; rangeEnd: Buffer }[] | null {
  const ops = branches(txn);
  if (ops.some((op) => op.request_txn !== undefined)) return null;
  return [...(txn.compare ?? []), ...ops.flatMap((op) => (op.request_range !== undefined ? [op.request_range] : []))].map((range) => ({
    key: range.key ?? Buffer.alloc(0),
    rangeEnd: range.range_end ?? Buffer.alloc(0),
  }));
}

/** etcd serves a Txn locally only when every Range in it is serializable. */
export function isSerializableTxn(txn: WireTxnRequest): boolean {
  return branches(txn).every((op) =>
    op.request_range !== undefined ? op.request_range.serializable === true : isSerializableTxn(op.request_txn ?? {}),
  );
}

export type TxnRefusal = RangeRefusal | 'tooManyOps' | 'unsupported';

/**
 * What etcd would refuse, or what the mirror does not answer itself
 * (historical ranges, odd enums). etcd's op limit is a budget shared down
 * the nesting: each level may hold at most what its parents left over, so
 * a Txn nested 129 deep with one op each is too many at the default 128.
 */
export function validateTxn(txn: WireTxnRequest, opBudget = MAX_TXN_OPS): TxnRefusal | null {
  const ops = Math.max((txn.compare ?? []).length, (txn.success ?? []).length, (txn.failure ?? []).length);
  if (ops > opBudget) return 'tooManyOps';
  for (const compare of txn.compare ?? []) {
    if (compare.key === undefined || compare.key.length === 0) return 'emptyKey';
    if (compare.range_end !== undefined && compare.range_end.length === 0) return 'unsupported';
    if (typeof compare.result === 'number' || typeof compare.target === 'number') return 'unsupported';
  }
  for (const op of branches(txn)) {
    if (op.request_range !== undefined) {
      const refusal = validateRange(op.request_range);
      if (refusal !== null) return refusal;
      if ((op.request_range.revision ?? '0') !== '0') return 'unsupported';
    } else if (op.request_txn !== undefined) {
      const refusal = validateTxn(op.request_txn, opBudget - ops);
      if (refusal !== null) return refusal;
    }
  }
  return null;
}

function compareNumbers(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareKv(compare: WireCompare, kv: EncodedKeyValue | null): boolean {
  let result: number;
  switch (compare.target ?? 'VERSION') {
    case 'VALUE':
      result = Buffer.compare(kv?.value ?? Buffer.alloc(0), compare.value ?? Buffer.alloc(0));
      break;
    case 'CREATE':
      result = compareNumbers(kv?.create_revision ?? 0, Number(compare.create_revision ?? 0));
      break;
    case 'MOD':
      result = compareNumbers(kv?.mod_revision ?? 0, Number(compare.mod_revision ?? 0));
      break;
    case 'LEASE':
      result = compareNumbers(Number(kv?.lease ?? 0), Number(compare.lease ?? 0));
      break;
    default:
      result = compareNumbers(kv?.version ?? 0, Number(compare.version ?? 0));
  }
  switch (compare.result ?? 'EQUAL') {
    case 'GREATER':
      return result > 0;
    case 'LESS':
      return result < 0;
    case 'NOT_EQUAL':
      return result !== 0;
    default:
      return result === 0;
  }
}

/** One compare as etcd applies it: every key in its range must satisfy it; a missing key compares as zero values, except that a VALUE compare on it fails. */
function applyCompare(store: MirrorStore, compare: WireCompare): boolean {
  const key = compare.key ?? Buffer.alloc(0);
  const rangeEnd = compare.range_end ?? Buffer.alloc(0);
  const kvs = evaluateRange(store, { key, range_end: rangeEnd }).kvs;
  if (kvs.length === 0) return compare.target === 'VALUE' ? false : compareKv(compare, null);
  return kvs.every((kv) => compareKv(compare, kv));
}

/** etcd gives a nested Txn an empty header (its Ranges carry the revision). */
const NESTED_TXN_HEADER = Buffer.alloc(0);

/**
 * A read-only Txn answered from the mirror at revision M, encoded: compares
 * on the current content, then the chosen branch's Ranges (nested Txns
 * recursively), each with the header etcd gives ops inside a Txn (revision
 * only), the keys as the store holds them.
 */
export function evaluateTxn(store: MirrorStore, txn: WireTxnRequest, revision: number, header: Buffer): Buffer {
  const succeeded = (txn.compare ?? []).every((compare) => applyCompare(store, compare));
  const ops = (succeeded ? txn.success : txn.failure) ?? [];
  const rangeHeader = encodeResponseHeader(null, revision);
  const responses = ops.map((op): EncodedResponseOp => {
    if (op.request_txn !== undefined) return { txn: evaluateTxn(store, op.request_txn, revision, NESTED_TXN_HEADER) };
    const result = evaluateRange(store, op.request_range ?? {});
    return { range: encodeRangeResponse(rangeHeader, result.kvs, result.more, result.count, result.keysOnly) };
  });
  return encodeTxnResponse(header, succeeded, responses);
}
