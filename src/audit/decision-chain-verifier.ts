// Walks the decision chain in seq order, a range of seq at a time, and recomputes every hash
// and link. The database renders each record's canonical text, so a few ranges are fetched at
// once (each on its own connection, so on its own core) while this process hashes. The first record that does not
// fit is named with what is wrong: its content was edited, it does not follow its
// predecessor's hash, or seq numbers are missing (records deleted) or out of order.
import { chainHash } from './decision-chain';

/** One stored record as the chain sees it. */
export interface ChainRow {
  id: string;
  seq: number;
  prevHash: string;
  hash: string;
  /** The record's canonical JSON, as hashed. */
  content: string;
}

export interface ChainReader {
  chainState(): Promise<{ head: { seq: number; hash: string }; anchor: { seq: number; hash: string } }>;
  firstSeqSince(time: Date): Promise<number | undefined>;
  /** The lowest seq stored. */
  firstSeq(): Promise<number | undefined>;
  /** Records with seq in (afterSeq, throughSeq], in seq order. */
  chainPage(afterSeq: number, throughSeq: number): Promise<ChainRow[]>;
}

export interface ChainBreak {
  /** The record where the chain stops holding (null when records at the end are missing). */
  id: string | null;
  seq: number;
  problem: string;
}

export type VerifyResult =
  { ok: true; checked: number; head: { seq: number; hash: string } } | { ok: false; checked: number; broken: ChainBreak };

export interface VerifyOptions {
  /** Start at the first record at or after this time, trusting its prev_hash. */
  since?: Date | undefined;
  /** seq numbers per page. Default 10,000. */
  pageSize?: number;
  /** Pages fetched ahead. Default 3. */
  prefetch?: number;
  onProgress?: (checked: number, total: number) => void;
}

export async function verifyChain(reader: ChainReader, options: VerifyOptions = {}): Promise<VerifyResult> {
  const pageSize = options.pageSize ?? 10_000;
  const { head, anchor } = await reader.chainState();
  let afterSeq: number;
  let expectedSeq: number;
  /** Undefined: trust the first record's prev_hash (--since). */
  let expectedPrev: string | undefined;
  if (options.since) {
    const first = await reader.firstSeqSince(options.since);
    if (first === undefined) return { ok: true, checked: 0, head };
    afterSeq = first - 1;
    expectedSeq = first;
  } else {
    // Retention may have dropped the start of the chain: it resumes after the anchor.
    afterSeq = Math.max(0, ((await reader.firstSeq()) ?? 1) - 1);
    expectedSeq = anchor.seq + 1;
    expectedPrev = anchor.hash;
  }
  const total = Math.max(0, head.seq - afterSeq);
  let checked = 0;
  let last: { id: string; seq: number } | undefined;
  const fail = (broken: ChainBreak): VerifyResult => ({ ok: false, checked, broken });

  // seq has no gaps unless records were deleted, so pages can be asked for by range, ahead.
  const pages: Promise<ChainRow[]>[] = [];
  let fetchedThrough = afterSeq;
  const fetchAhead = () => {
    while (pages.length < (options.prefetch ?? 3) && fetchedThrough < head.seq) {
      const through = Math.min(head.seq, fetchedThrough + pageSize);
      pages.push(reader.chainPage(fetchedThrough, through));
      fetchedThrough = through;
    }
  };
  fetchAhead();
  try {
    while (pages.length > 0) {
      const rows = await pages.shift()!;
      fetchAhead();
      for (const row of rows) {
        const { id, seq, prevHash } = row;
        const contentHash = chainHash(prevHash, seq, row.content);
        // Records older than the anchor that survived retention (their month was not dropped yet):
        // their predecessors may be gone, so only their own content can be checked.
        const beforeAnchor = !options.since && seq <= anchor.seq;
        if (!beforeAnchor) {
          if (seq < expectedSeq)
            return fail({ id, seq, problem: `seq ${seq} comes again after seq ${expectedSeq - 1}: records were reordered or duplicated` });
          if (seq > expectedSeq) {
            const missing = seq - expectedSeq === 1 ? `seq ${expectedSeq} is` : `seq ${expectedSeq} to ${seq - 1} are`;
            return fail({ id, seq, problem: `gap in seq: ${missing} missing before this record (deleted, or their seq was changed)` });
          }
        }
        if (contentHash !== row.hash) return fail({ id, seq, problem: 'content edited: the stored hash does not match the record' });
        if (!beforeAnchor) {
          if (expectedPrev !== undefined && prevHash !== expectedPrev) {
            return fail({
              id,
              seq,
              problem: `previous hash mismatch: prev_hash is not the hash of seq ${seq - 1} (that record was replaced, or this one moved)`,
            });
          }
          expectedPrev = row.hash;
          expectedSeq = seq + 1;
        }
        checked += 1;
        last = { id, seq };
      }
      options.onProgress?.(checked, total);
    }
  } finally {
    for (const page of pages) page.catch(() => undefined);
  }

  // The head row moves in the same transaction as every append: records after the last one seen are gone.
  if (expectedSeq - 1 < head.seq) {
    const missing = head.seq === expectedSeq ? `seq ${head.seq} is` : `seq ${expectedSeq} to ${head.seq} are`;
    return fail({
      id: last?.id ?? null,
      seq: expectedSeq,
      problem: `the newest records are missing: ${missing} gone (the chain head is at seq ${head.seq})`,
    });
  }
  if (expectedPrev !== undefined && expectedSeq - 1 === head.seq && head.seq > anchor.seq && expectedPrev !== head.hash) {
    return fail({ id: last?.id ?? null, seq: head.seq, problem: 'the chain head does not match the newest record: it was replaced' });
  }
  return { ok: true, checked, head };
}
