// Walks every chain of the decision log (one per instance, and the legacy chain of the records
// from before), each in position order, a range of positions at a time, and recomputes every
// hash and link. The database renders each record's canonical text, so a few ranges are fetched
// at once (each on its own connection, so on its own core) while this process hashes. The first
// record of a chain that does not fit is named with its chain and what is wrong: its content was
// edited, it does not follow its predecessor's hash, or positions are missing (records deleted)
// or out of order.
import { chainHash } from './decision-chain';

/** One stored record as its chain sees it. */
export interface ChainRow {
  id: string;
  /** The record's position in its chain (what the hash covers). */
  seq: number;
  /** Its place in the whole log (`decisions.seq`): it grows along each chain. */
  logSeq: number;
  prevHash: string;
  hash: string;
  /** The record's canonical JSON, as hashed. */
  content: string;
}

/** A chain's newest record (head) and the newest record retention removed (anchor). */
export interface ChainState {
  chain: string;
  head: { seq: number; hash: string };
  anchor: { seq: number; hash: string };
  /** The chain has records but its head row is gone. */
  headMissing?: boolean;
}

export interface ChainReader {
  /** Every chain, by name. */
  chainStates(): Promise<ChainState[]>;
  /** The position of the chain's earliest record at or after `time`. */
  firstSeqSince(chain: string, time: Date): Promise<number | undefined>;
  /** The lowest position the chain still stores. */
  firstSeq(chain: string): Promise<number | undefined>;
  /** The chain's records with position in (afterSeq, throughSeq], in order. */
  chainPage(chain: string, afterSeq: number, throughSeq: number): Promise<ChainRow[]>;
}

export interface ChainBreak {
  chain: string;
  /** The record where the chain stops holding (null when records at the end are missing). */
  id: string | null;
  /** Its position in the chain. */
  seq: number;
  problem: string;
}

export type ChainResult =
  | { chain: string; ok: true; checked: number; head: { seq: number; hash: string } }
  | { chain: string; ok: false; checked: number; head: { seq: number; hash: string }; broken: ChainBreak };

/** Every chain's result, by name; `broken` is the first chain's break. */
export type VerifyResult =
  { ok: true; checked: number; chains: ChainResult[] } | { ok: false; checked: number; chains: ChainResult[]; broken: ChainBreak };

export interface VerifyOptions {
  /** Start each chain at its first record at or after this time, trusting its prev_hash. */
  since?: Date | undefined;
  /** Positions per page. Default 10,000. */
  pageSize?: number;
  /** Pages fetched ahead. Default 3. */
  prefetch?: number;
  /** Records checked so far (all chains) and how many there are. */
  onProgress?: (checked: number, total: number) => void;
}

export async function verifyChain(reader: ChainReader, options: VerifyOptions = {}): Promise<VerifyResult> {
  const states = await reader.chainStates();
  const total = states.reduce((sum, state) => sum + Math.max(0, state.head.seq - state.anchor.seq), 0);
  const chains: ChainResult[] = [];
  let checked = 0;
  for (const state of states) {
    const result = await verifyOneChain(reader, state, options, (inChain) => options.onProgress?.(checked + inChain, total));
    checked += result.checked;
    chains.push(result);
  }
  const broken = chains.find((result) => !result.ok);
  return broken && !broken.ok ? { ok: false, checked, chains, broken: broken.broken } : { ok: true, checked, chains };
}

async function verifyOneChain(
  reader: ChainReader,
  { chain, head, anchor, headMissing }: ChainState,
  options: VerifyOptions,
  onProgress: (checked: number) => void,
): Promise<ChainResult> {
  if (headMissing)
    return {
      chain,
      ok: false,
      checked: 0,
      head,
      broken: { chain, id: null, seq: 0, problem: 'the chain has records but no head row: it was deleted' },
    };
  const pageSize = options.pageSize ?? 10_000;
  let afterSeq: number;
  let expectedSeq: number;
  /** Undefined: trust the first record's prev_hash (--since). */
  let expectedPrev: string | undefined;
  if (options.since) {
    const first = await reader.firstSeqSince(chain, options.since);
    if (first === undefined) return { chain, ok: true, checked: 0, head };
    afterSeq = first - 1;
    expectedSeq = first;
  } else {
    // Retention may have dropped the start of the chain: it resumes after the anchor.
    afterSeq = Math.max(0, ((await reader.firstSeq(chain)) ?? 1) - 1);
    expectedSeq = anchor.seq + 1;
    expectedPrev = anchor.hash;
  }
  let checked = 0;
  let last: { id: string; seq: number; logSeq: number } | undefined;
  const fail = (id: string | null, seq: number, problem: string): ChainResult => ({
    chain,
    ok: false,
    checked,
    head,
    broken: { chain, id, seq, problem },
  });

  // Positions have no gaps unless records were deleted, so pages can be asked for by range, ahead.
  const pages: Promise<ChainRow[]>[] = [];
  let fetchedThrough = afterSeq;
  const fetchAhead = () => {
    while (pages.length < (options.prefetch ?? 3) && fetchedThrough < head.seq) {
      const through = Math.min(head.seq, fetchedThrough + pageSize);
      pages.push(reader.chainPage(chain, fetchedThrough, through));
      fetchedThrough = through;
    }
  };
  fetchAhead();
  try {
    for (let page = pages.shift(); page; page = pages.shift()) {
      const rows = await page;
      fetchAhead();
      for (const row of rows) {
        const { id, seq, prevHash } = row;
        const contentHash = chainHash(prevHash, chain, seq, row.content);
        // Records older than the anchor that survived retention (their month was not dropped yet):
        // their predecessors may be gone, so only their own content can be checked.
        const beforeAnchor = !options.since && seq <= anchor.seq;
        if (!beforeAnchor) {
          if (seq < expectedSeq)
            return fail(id, seq, `seq ${seq} comes again after seq ${expectedSeq - 1}: records were reordered or duplicated`);
          if (seq > expectedSeq) {
            const missing = seq - expectedSeq === 1 ? `seq ${expectedSeq} is` : `seq ${expectedSeq} to ${seq - 1} are`;
            return fail(
              id,
              seq,
              `gap in seq: ${missing} missing before this record (deleted, moved to another chain, or their seq was changed)`,
            );
          }
        }
        if (last && row.logSeq <= last.logSeq)
          return fail(
            id,
            seq,
            `its place in the log (seq ${row.logSeq} of the log) is not after that of the record before it (${last.logSeq}): records were reordered`,
          );
        if (contentHash !== row.hash)
          return fail(id, seq, 'content edited: the stored hash does not match the record (or the record was moved from another chain)');
        if (!beforeAnchor) {
          if (expectedPrev !== undefined && prevHash !== expectedPrev) {
            return fail(
              id,
              seq,
              `previous hash mismatch: prev_hash is not the hash of seq ${seq - 1} (that record was replaced, or this one moved)`,
            );
          }
          expectedPrev = row.hash;
          expectedSeq = seq + 1;
        }
        checked += 1;
        last = { id, seq, logSeq: row.logSeq };
      }
      onProgress(checked);
    }
  } finally {
    for (const page of pages) page.catch(() => undefined);
  }

  // The head row moves in the same transaction as every append: records after the last one seen are gone.
  if (expectedSeq - 1 < head.seq) {
    const missing = head.seq === expectedSeq ? `seq ${head.seq} is` : `seq ${expectedSeq} to ${head.seq} are`;
    return fail(last?.id ?? null, expectedSeq, `the newest records are missing: ${missing} gone (the chain head is at seq ${head.seq})`);
  }
  if (expectedPrev !== undefined && expectedSeq - 1 === head.seq && head.seq > anchor.seq && expectedPrev !== head.hash) {
    return fail(last?.id ?? null, head.seq, 'the chain head does not match the newest record: it was replaced');
  }
  return { chain, ok: true, checked, head };
}
