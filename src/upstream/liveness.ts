import { EventEmitter } from 'node:events';
import { Metadata } from '@grpc/grpc-js';
import type { Logger } from '../log';
import type { UpstreamPool } from './pool';
import { callUpstream } from './unary';

/** How often members are asked whether they have a leader. */
export const PROBE_INTERVAL_MS = 1_000;

export interface Liveness extends EventEmitter<{ lost: []; back: [] }> {
  /** True once no member has answered for the upstream timeout. */
  isLost(): boolean;
  /** Any successful exchange with the upstream (a probe, a watch response) counts as an answer. */
  heard(): void;
  close(): void;
}

/**
 * Decides whether the upstream cluster is lost (contract section 6): no member
 * has answered for `timeoutMs`. Answers come from a Status probe every second
 * with etcd's require-leader metadata (a member cut off from its leader
 * refuses it) and from the mirror's watch stream. The verdict changes with one
 * log line each way.
 */
export function createLiveness(pool: UpstreamPool, timeoutMs: number, log: Logger): Liveness {
  const emitter = new EventEmitter<{ lost: []; back: [] }>();
  let lastAnswer = Date.now();
  let lost = false;
  let closed = false;

  const update = (): void => {
    const silentFor = Date.now() - lastAnswer;
    if (!lost && silentFor >= timeoutMs) {
      lost = true;
      log.warn({ silentForMs: silentFor }, 'upstream lost: no member answered within the upstream timeout');
      emitter.emit('lost');
    }
  };
  const heard = (): void => {
    lastAnswer = Date.now();
    if (lost) {
      lost = false;
      log.info('upstream back');
      emitter.emit('back');
    }
  };

  const probe = async (): Promise<void> => {
    const metadata = new Metadata();
    metadata.set('hasleader', 'true');
    for (const member of pool.candidates()) {
      try {
        await callUpstream(member.client, 'etcdserverpb.Maintenance', 'Status', {}, { deadlineMs: Math.min(timeoutMs, PROBE_INTERVAL_MS * 2), metadata });
        heard();
        return;
      } catch {
        // try the next member; the verdict is taken on the timer
      }
    }
  };
  let probing = false;
  const timer = setInterval(() => {
    update();
    if (probing || closed) return;
    probing = true;
    probe().finally(() => {
      probing = false;
    });
  }, PROBE_INTERVAL_MS);
  timer.unref();
  void probe();

  return Object.assign(emitter, {
    isLost: () => {
      update();
      return lost;
    },
    heard,
    close() {
      closed = true;
      clearInterval(timer);
    },
  });
}
