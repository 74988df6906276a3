import type * as grpc from '@grpc/grpc-js';
import { SignerError } from '../../core/errors.js';
import type { Authorizer } from '../../infra/grpc/auth.js';
import { statusOf } from '../../infra/grpc/status.js';
import { unary } from '../../infra/grpc/unary.js';
import type { Logger } from '../../infra/log.js';
import type { BatchItemRecord, BatchResultStore } from '../../infra/store/batch-results.js';
import type { ReleaseGate, WireSignResponse } from '../signing/flow.js';
import { decodeResult } from '../signing/result-codec.js';
import { PAGE_RESPONSE_BASE, resultBound } from './batch-size.js';
import { preview, requireId } from './ids.js';

/** Items per page when the request names none, and the most it may name. */
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
/** The most items a batch has (flow.ts MAX_BATCH_ITEMS): a page token beyond it is no index. */
const MAX_INDEX = 10_000;

interface Request {
  batchId: string;
  pageToken: string;
  pageSize: number;
}

type WireResult = { signed: WireSignResponse } | { error: { code: grpc.status; reason: string; message: string } };

/**
 * Signer.GetBatchResults: a committed batch's results, read back from the store in pages, for a
 * client whose SignBatch response never arrived (a dropped connection, a response larger than
 * it reads). Only the client that sent the batch finds it: the store is asked by (client,
 * batch id), so another client's batch and an unknown one get the same NOT_FOUND. Each page
 * stays within `limitBytes`, the same bound as a SignBatch response.
 */
export function batchResultsHandler(deps: {
  auth: Authorizer;
  store: BatchResultStore;
  limitBytes: number;
  /** Throws while signing is stopped (AUDIT_LOG_INCONSISTENT), as before a Sign replay. */
  gate?: (() => void) | undefined;
  /** The rollback mark (absent when off): stored signatures leave only once it covers them. */
  release?: ReleaseGate | undefined;
  log: Logger;
}): grpc.handleUnaryCall<Request, unknown> {
  const { auth, store, limitBytes, gate, release, log } = deps;
  return unary(log, async (call: grpc.ServerUnaryCall<Request, unknown>) => {
    const id = auth.require(call, 'signer');
    // Stored signatures leave here as they do in a replay: not from a rolled-back store or a
    // rewritten log, and not before the rollback mark covers their entries.
    gate?.();
    release?.assertServing();
    const batchId = requireId('batch_id', 'batch', call.request.batchId);
    const from = pageStart(call.request.pageToken);
    const size = pageSize(call.request.pageSize);
    const page = await store.batchResults(id.client, batchId, from, size, new Date());
    if (!page) {
      throw new SignerError(
        'BATCH_NOT_FOUND',
        `no batch "${batchId}" of this client is on record (never committed, or older than the two hours results are kept)`,
        { batchId },
      );
    }
    const results: WireResult[] = [];
    let bytes = PAGE_RESPONSE_BASE;
    for (const item of page.items) {
      const result = toWire(item, batchId);
      const bound = resultBound('signed' in result ? result.signed.evm?.signedTx.length : undefined);
      // Always at least one item, so every page advances; a batch's items fit by construction.
      if (results.length > 0 && bytes + bound > limitBytes) break;
      bytes += bound;
      results.push(result);
    }
    if (results.some((r) => 'signed' in r)) await release?.release();
    const next = from + results.length;
    const more = results.length < page.items.length || page.more;
    return { batchId, firstIndex: from, results, nextPageToken: more ? String(next) : '' };
  });
}

/** A stored record as a BatchResult: the stored SignResponse, or why the item has none. */
function toWire(item: BatchItemRecord, batchId: string): WireResult {
  if (item.state === 'done' && item.result) return { signed: decodeResult<WireSignResponse>(item.result) };
  const reason = item.leaseExpired ? 'BATCH_ITEM_UNSIGNED' : 'REQUEST_IN_FLIGHT';
  const message = item.leaseExpired
    ? `item ${item.index} was reserved but not signed; retry SignBatch with batch_id "${batchId}" to sign it`
    : `item ${item.index} is still being signed; ask again shortly`;
  return { error: { code: statusOf(reason), reason, message } };
}

/** The index a page token names ("" is the first item); REQUEST_INVALID for anything else. */
function pageStart(token: string): number {
  if (token === '') return 0;
  if (/^[0-9]{1,5}$/.test(token) && Number(token) <= MAX_INDEX) return Number(token);
  throw new SignerError(
    'REQUEST_INVALID',
    `page_token "${preview(token)}" is not one this service returned; use next_page_token of the previous page`,
    { field: 'page_token', length: String(token.length) },
  );
}

function pageSize(n: number): number {
  if (n === 0) return DEFAULT_PAGE_SIZE;
  if (n <= MAX_PAGE_SIZE) return n;
  throw new SignerError('REQUEST_INVALID', `page_size is 0 (${DEFAULT_PAGE_SIZE}) or 1..${MAX_PAGE_SIZE}, got ${n}`, {
    field: 'page_size',
    max: String(MAX_PAGE_SIZE),
  });
}
