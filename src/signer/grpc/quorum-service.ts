import type * as grpc from '@grpc/grpc-js';
import { SignerError } from '../../core/errors.js';
import type { Authorizer } from '../../infra/grpc/auth.js';
import { unary } from '../../infra/grpc/unary.js';
import type { Logger } from '../../infra/log.js';
import type { FreezeRecord } from '../../infra/store/store.js';
import type { Proposals, ProposalView } from '../policy/proposals.js';
import { timestamp } from './convert.js';
import { requireId } from './ids.js';

const PROPOSAL_ID = /^[0-9a-f]{32}$/;

function proposalToWire(p: ProposalView) {
  const a = p.assessment;
  const why = new Map(a.check.invalid.map((i) => [i.admin, i.why]));
  const valid = new Set(a.check.valid);
  const state = p.state !== 'open' ? p.state : a.check.reachedAt === null ? 'open' : a.blocked ? 'blocked' : 'approved';
  return {
    id: p.id,
    kind: p.kind,
    target: p.target,
    baseVersion: p.baseVersion,
    document: p.document,
    proposedBy: p.proposedBy,
    proposedAt: timestamp(p.proposedAt),
    state,
    approvals: p.approvals.map((x) => ({
      admin: x.admin,
      signature: Buffer.from(x.signature),
      approvedAt: timestamp(x.at),
      valid: valid.has(x),
      invalidReason: valid.has(x) ? '' : (why.get(x.admin) ?? ''),
    })),
    quorum: p.quorum,
    loosenings: a.loosenings,
    approvedAt: a.approvedAt ? timestamp(a.approvedAt) : null,
    activatesAt: a.dueAt ? timestamp(a.dueAt) : null,
    note: p.note ?? (a.blocked || ''),
    signingBytes: Buffer.from(p.signingBytes),
    activeDocument: p.activeDocument,
    closedBy: p.closedBy ?? '',
    closedAt: p.closedAt ? timestamp(p.closedAt) : null,
  };
}

const freezeToWire = (f: FreezeRecord) => ({
  kind: f.kind,
  target: f.target,
  frozenAt: timestamp(f.frozenAt),
  frozenBy: f.frozenBy,
});

/**
 * KeyAdmin's admin-quorum RPCs (proto "Admin quorum"). The caller's admin role (mTLS) lets it
 * propose, cancel and freeze; what approves is the signature in the request, by a configured
 * admin's key, never the connection. Without `admins` in the config every call here is refused.
 */
export function quorumHandlers(deps: {
  auth: Authorizer;
  proposals: Proposals | undefined;
  log: Logger;
}): grpc.UntypedServiceImplementation {
  const { auth, log } = deps;
  const need = () => {
    if (!deps.proposals)
      throw new SignerError('QUORUM_REQUIRED', 'no admin quorum is configured (config "admins"): nothing to propose');
    return deps.proposals;
  };
  const proposalId = (v: string) => {
    if (typeof v === 'string' && PROPOSAL_ID.test(v)) return v;
    throw new SignerError('REQUEST_INVALID', 'proposal_id is 32 lowercase hex characters');
  };
  return {
    ProposePolicy: unary(log, async (call: grpc.ServerUnaryCall<{ name: string; document: string }, unknown>) => {
      const id = auth.require(call, 'admin');
      const name = requireId('name', 'key', call.request.name, 'POLICY_INVALID');
      return proposalToWire(await need().proposePolicy(name, call.request.document, id.client, new Date()));
    }),

    ProposeAccess: unary(log, async (call: grpc.ServerUnaryCall<{ document: string }, unknown>) => {
      const id = auth.require(call, 'admin');
      return proposalToWire(await need().proposeAccess(String(call.request.document ?? ''), id.client, new Date()));
    }),

    GetAccess: unary(log, async (call: grpc.ServerUnaryCall<unknown, unknown>) => {
      const id = auth.identify(call);
      if (!id.roles.has('auditor')) auth.require(call, 'admin');
      return need().accessInForce();
    }),

    ProposeDestroyKeyVersion: unary(
      log,
      async (
        call: grpc.ServerUnaryCall<
          { destroy?: { keyId: string; version: number; confirmKeyId: string; confirmSwept?: boolean } },
          unknown
        >,
      ) => {
        const id = auth.require(call, 'admin');
        const d = call.request.destroy;
        if (!d) throw new SignerError('REQUEST_INVALID', 'destroy is required');
        const keyId = requireId('key_id', 'key', d.keyId);
        const req = { keyId, version: d.version, confirmKeyId: d.confirmKeyId, confirmSwept: d.confirmSwept === true };
        return proposalToWire(await need().proposeDestroy(req, id.client, new Date()));
      },
    ),

    ProposeUnfreeze: unary(
      log,
      async (call: grpc.ServerUnaryCall<{ target?: 'keyId' | 'policy'; keyId?: string; policy?: string }, unknown>) => {
        const id = auth.require(call, 'admin');
        const r = call.request;
        if (r.target === 'keyId')
          return proposalToWire(
            await need().proposeUnfreeze('key', requireId('key_id', 'key', r.keyId!), id.client, new Date()),
          );
        if (r.target === 'policy')
          return proposalToWire(
            await need().proposeUnfreeze('policy', requireId('policy', 'key', r.policy!), id.client, new Date()),
          );
        throw new SignerError('REQUEST_INVALID', 'key_id or policy is required');
      },
    ),

    ApproveProposal: unary(
      log,
      async (call: grpc.ServerUnaryCall<{ proposalId: string; admin: string; signature: Buffer }, unknown>) => {
        const id = auth.require(call, 'admin');
        const r = call.request;
        const view = await need().approve(
          proposalId(r.proposalId),
          String(r.admin),
          new Uint8Array(r.signature ?? []),
          id.client,
          new Date(),
        );
        return proposalToWire(view);
      },
    ),

    CancelProposal: unary(log, async (call: grpc.ServerUnaryCall<{ proposalId: string; reason: string }, unknown>) => {
      const id = auth.require(call, 'admin');
      const reason = String(call.request.reason ?? '').slice(0, 500);
      return proposalToWire(await need().cancel(proposalId(call.request.proposalId), id.client, reason, new Date()));
    }),

    CancelShareDestroy: unary(
      log,
      async (
        call: grpc.ServerUnaryCall<
          { keyId: string; keyVersion: number; proposalId: string; admin: string; signature: Buffer },
          unknown
        >,
      ) => {
        const id = auth.require(call, 'admin');
        const r = call.request;
        const keyId = requireId('key_id', 'key', r.keyId);
        const c = {
          keyId,
          version: r.keyVersion,
          proposalId: proposalId(r.proposalId),
          admin: r.admin,
          signature: r.signature,
        };
        return { restored: await need().cancelShareDestroy(c, id.client) };
      },
    ),

    ListProposals: unary(log, async (call: grpc.ServerUnaryCall<unknown, unknown>) => {
      const id = auth.identify(call);
      if (!id.roles.has('auditor')) auth.require(call, 'admin');
      return { proposals: (await need().list()).map(proposalToWire) };
    }),

    FreezeKey: unary(log, async (call: grpc.ServerUnaryCall<{ keyId: string }, unknown>) => {
      const id = auth.require(call, 'admin');
      const keyId = requireId('key_id', 'key', call.request.keyId);
      return freezeToWire(await need().freeze('key', keyId, id.client, new Date()));
    }),

    FreezePolicy: unary(log, async (call: grpc.ServerUnaryCall<{ name: string }, unknown>) => {
      const id = auth.require(call, 'admin');
      const name = requireId('name', 'key', call.request.name);
      return freezeToWire(await need().freeze('policy', name, id.client, new Date()));
    }),
  };
}
