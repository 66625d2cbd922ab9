import type { MirrorKeeper } from '../wiring/sides';
import type { ToWorker } from './messages';
import type { SharedTokens } from './shared-tokens';

/**
 * What the workers follow of the side that keeps the mirror: every change
 * is told to all of them as it happens (`tell`), and the state of things
 * to one that just said hello.
 */
export function tellWorkersOfChanges(keeper: MirrorKeeper, tell: (message: ToWorker) => void, grayscalePrefixes: () => readonly string[]): void {
  const { side } = keeper;
  const notice = (mirrorNotice: Extract<ToWorker, { type: 'ecp:mirror' }>['notice']): void => tell({ type: 'ecp:mirror', notice: mirrorNotice });
  keeper.onRevision((revision) => notice({ kind: 'revision', revision }));
  side.mirror.on('relisted', (revision, previous) => notice({ kind: 'relisted', revision, previous }));
  side.mirror.on('adopted', (revision, previous) => notice({ kind: 'adopted', revision, previous }));
  side.mirror.on('discarded', (previous) => notice({ kind: 'discarded', previous }));
  side.mirror.on('rederived', (revision) => notice({ kind: 'rederived', revision, prefixes: [...grayscalePrefixes(), ...side.grayscale.settings.prefixes] }));
  for (const event of ['lost', 'back', 'silent', 'answered'] as const) side.liveness.on(event, () => tell(livenessState(keeper)));
  side.auth.onStateChange((state) => tell({ type: 'ecp:auth', state }));
  side.scope.onUnmirrored((unmirrored) => tell({ type: 'ecp:scope', unmirrored }));
  for (const event of ['changed', 'healthy', 'unhealthy'] as const) side.pool.on(event, () => tell(membersState(keeper)));
}

/** Whatever a worker missed before it listened: the state of things now, then the tokens the others learned. */
export function stateNow(keeper: MirrorKeeper, sharedTokens: SharedTokens): ToWorker[] {
  const { side } = keeper;
  const messages: ToWorker[] = [
    livenessState(keeper),
    { type: 'ecp:auth', state: side.auth.state() },
    { type: 'ecp:scope', unmirrored: side.scope.unmirrored },
    membersState(keeper),
    { type: 'ecp:mirror', notice: { kind: 'revision', revision: side.mirror.revision() } },
  ];
  // The tokens after the liveness they depend on (what etcd no longer takes is not among them).
  const replay = sharedTokens.replay();
  if (replay.authRevisionAtLeast > 0) messages.push({ type: 'ecp:auth-revision', atLeast: replay.authRevisionAtLeast });
  for (const token of replay.tokens) messages.push({ type: 'ecp:token', token });
  return messages;
}

function livenessState({ side }: MirrorKeeper): ToWorker {
  return { type: 'ecp:liveness', lost: side.liveness.isLost(), silent: side.liveness.isSilent(), answered: side.liveness.hasAnswered() };
}

function membersState({ side }: MirrorKeeper): ToWorker {
  return {
    type: 'ecp:members',
    members: side.pool.members().map((member) => {
      const health = side.pool.health(member);
      // What the member is (etcd or a proxy) too: the worker's /readyz says it, and its own calls may not have asked.
      return { url: member.endpoint.url, healthy: health === 'healthy' ? true : health === 'unhealthy' ? false : null, kind: side.pool.kind(member) };
    }),
  };
}
