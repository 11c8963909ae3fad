// What `decisions verify --public-key` adds to a chain's own check, which cannot tell a
// whole-chain rewrite or a cut start from the real thing: the chain's signed checkpoints still
// matching it, none deleted (but those retention pruned below its anchor), and its anchor moved
// only by a signed retention run, not too far.
// Signatures name their chain, so one chain's cannot vouch for another.
import type { KeyObject } from 'node:crypto';
import { anchorText, checkpointText, keyIdOf, signatureHolds } from './checkpoint-key';
import type { ChainHead, StoredAnchor, StoredCheckpoint } from './pg-decision-checkpoint-store';

export interface CheckpointReader {
  anchor(chain: string): Promise<StoredAnchor>;
  page(chain: string, afterSeq: number, limit: number): Promise<StoredCheckpoint[]>;
  hashesAt(chain: string, seqs: readonly number[]): Promise<Map<number, string>>;
}

export type CheckpointVerifyResult =
  | { ok: true; checkpoints: number; newest: StoredCheckpoint | undefined }
  | { ok: false; checkpoints: number; broken: { what: string; problem: string } };

export interface CheckpointVerifyOptions {
  chain: string;
  /** The head the chain verification ended at. */
  head: ChainHead;
  now?: Date;
  pageSize?: number;
}

const DAY_MS = 86_400_000;
// Clocks of gateways, database and auditor differ a little, and a record's stored time is its
// transaction's start: comparisons between them allow this much.
const CLOCK_SLACK_MS = 5 * 60_000;

export async function verifyCheckpoints(
  reader: CheckpointReader,
  publicKey: KeyObject,
  options: CheckpointVerifyOptions,
): Promise<CheckpointVerifyResult> {
  const { head, chain } = options;
  const now = options.now ?? new Date();
  const keyId = keyIdOf(publicKey);
  let checked = 0;
  const fail = (what: string, problem: string): CheckpointVerifyResult => ({ ok: false, checkpoints: checked, broken: { what, problem } });
  const signedBy = (row: { keyId: string | null }) =>
    row.keyId === keyId
      ? 'the row was edited after it was signed'
      : `the row was edited, or signed with another key (key ${row.keyId ?? 'none'}; this public key is ${keyId})`;

  const anchor = await reader.anchor(chain);
  const anchorName = `the anchor (decision_chain_anchor, seq ${anchor.seq})`;
  if (anchor.seq > 0) {
    if (anchor.signature === null || anchor.movedAt === null || anchor.retentionDays === null) {
      return fail(
        anchorName,
        'it was moved without a signed retention run: records before it were deleted behind the gateway (or by a retention run from before checkpoints existed)',
      );
    }
    const claim = { chain, seq: anchor.seq, hash: anchor.hash, movedAt: anchor.movedAt, retentionDays: anchor.retentionDays };
    if (!signatureHolds(publicKey, anchorText(claim), anchor.signature))
      return fail(anchorName, `its signature does not hold: ${signedBy(anchor)}`);
    if (anchor.movedAt.getTime() > now.getTime() + CLOCK_SLACK_MS)
      return fail(anchorName, `it says retention moved it at ${anchor.movedAt.toISOString()}, which is in the future`);
  }

  /** The newest checkpoint taken before the anchor's record was stored. */
  let beforeAnchor: StoredCheckpoint | undefined;
  let previous: StoredCheckpoint | undefined;
  const pageSize = options.pageSize ?? 1_000;
  for (;;) {
    const page = await reader.page(chain, previous?.seq ?? -1, pageSize);
    if (page.length === 0) break;
    const hashes = await reader.hashesAt(
      chain,
      page.map((checkpoint) => checkpoint.seq),
    );
    for (const checkpoint of page) {
      const name = `the checkpoint of seq ${checkpoint.seq} (signed ${checkpoint.signedAt.toISOString()})`;
      if (!signatureHolds(publicKey, checkpointText({ chain, ...checkpoint }), checkpoint.signature))
        return fail(name, `its signature does not hold: ${signedBy(checkpoint)}`);
      // Retention deletes the checkpoints before the newest one below the anchor (they vouch
      // only for records it removed): the first one left may name a predecessor that is gone,
      // provided it is itself below the anchor. Any other gap is a deleted checkpoint.
      const pruned = !previous && checkpoint.prevSeq !== null && checkpoint.prevSeq < checkpoint.seq && checkpoint.seq < anchor.seq;
      if (!pruned && checkpoint.prevSeq !== (previous?.seq ?? null)) {
        const before = checkpoint.prevSeq === null ? 'no checkpoint' : `the checkpoint of seq ${checkpoint.prevSeq}`;
        const found = previous ? `the checkpoint of seq ${previous.seq}` : 'none';
        return fail(name, `it was signed after ${before}, but the one before it now is ${found}: checkpoints were deleted or inserted`);
      }
      if (checkpoint.seq > head.seq)
        return fail(
          name,
          `the chain head is at seq ${head.seq}, behind this checkpoint: the newest records were removed and the head moved back`,
        );
      const stored = hashes.get(checkpoint.seq);
      if (stored === undefined && checkpoint.seq > anchor.seq)
        return fail(name, `seq ${checkpoint.seq} is gone from the chain, though retention never reached it`);
      if (stored !== undefined && stored !== checkpoint.hash) {
        return fail(name, `seq ${checkpoint.seq} now has hash ${stored}, not the signed ${checkpoint.hash}: the chain was rewritten`);
      }
      if (checkpoint.seq < anchor.seq) beforeAnchor = checkpoint;
      previous = checkpoint;
      checked += 1;
    }
  }

  if (!previous && head.seq > 0)
    return fail(
      'the checkpoints',
      `none is stored, though the chain has ${head.seq} records: they were deleted, or no gateway has signed one yet`,
    );
  if (anchor.seq > 0 && beforeAnchor && anchor.movedAt && anchor.retentionDays !== null) {
    // Seq beforeAnchor.seq was the head when beforeAnchor was signed, so the anchor's record was
    // stored after that: retention may drop it only retention_days later.
    const allowedFrom = beforeAnchor.signedAt.getTime() + anchor.retentionDays * DAY_MS;
    if (anchor.movedAt.getTime() < allowedFrom - CLOCK_SLACK_MS) {
      return fail(
        anchorName,
        `it is newer than retention allows: seq ${anchor.seq} was stored after ${beforeAnchor.signedAt.toISOString()} (the checkpoint of seq ${beforeAnchor.seq}), ` +
          `less than ${anchor.retentionDays} days before the retention run of ${anchor.movedAt.toISOString()}`,
      );
    }
  }
  return { ok: true, checkpoints: checked, newest: previous };
}
