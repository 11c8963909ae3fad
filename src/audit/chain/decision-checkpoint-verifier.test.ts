import { generateKeyPairSync } from 'node:crypto';
import { anchorText, CheckpointSigner, checkpointText } from './checkpoint-key';
import { verifyCheckpoints, type CheckpointReader } from './decision-checkpoint-verifier';
import type { StoredAnchor, StoredCheckpoint } from './pg-decision-checkpoint-store';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const signer = new CheckpointSigner(privateKey);
const hash = (seq: number) => seq.toString(16).padStart(64, '0');
const DAY = 86_400_000;
const CHAIN = 'gw-1';

function checkpoints(entries: [seq: number, signedAt: string][]): StoredCheckpoint[] {
  return entries.map(([seq, signedAt], i) => {
    const claim = { seq, hash: hash(seq), signedAt: new Date(signedAt), prevSeq: i === 0 ? null : entries[i - 1]![0] };
    return { ...claim, keyId: signer.keyId, signature: signer.sign(checkpointText({ chain: CHAIN, ...claim })) };
  });
}

function signedAnchor(seq: number, movedAt: string, retentionDays: number): StoredAnchor {
  const claim = { seq, hash: hash(seq), movedAt: new Date(movedAt), retentionDays };
  return { ...claim, keyId: signer.keyId, signature: signer.sign(anchorText({ chain: CHAIN, ...claim })) };
}

/** A chain whose records from `firstSeq` on are stored with hash(seq). */
function reader(stored: StoredCheckpoint[], anchor: StoredAnchor, firstSeq: number): CheckpointReader & { pages: number } {
  const fake = {
    pages: 0,
    anchor: (chain: string) => Promise.resolve(chain === CHAIN ? anchor : unmoved),
    page: (chain: string, afterSeq: number, limit: number) => {
      fake.pages += 1;
      return Promise.resolve(chain === CHAIN ? stored.filter((checkpoint) => checkpoint.seq > afterSeq).slice(0, limit) : []);
    },
    hashesAt: (chain: string, seqs: readonly number[]) =>
      Promise.resolve(new Map(chain === CHAIN ? seqs.filter((seq) => seq >= firstSeq).map((seq) => [seq, hash(seq)]) : [])),
  };
  return fake;
}

const unmoved: StoredAnchor = { seq: 0, hash: '0'.repeat(64), movedAt: null, retentionDays: null, keyId: null, signature: null };

describe('verifyCheckpoints', () => {
  it("refuses another chain's checkpoints: the signature names the chain", async () => {
    const theirs = checkpoints([[10, '2026-01-01T00:00:00Z']]);
    const result = await verifyCheckpoints(reader(theirs, unmoved, 1), publicKey, { chain: 'gw-2', head: { seq: 12, hash: hash(12) } });
    // The reader serves CHAIN's checkpoints only; asked as gw-2's, they are none of its.
    expect(result).toMatchObject({ ok: false, broken: { what: 'the checkpoints' } });
    const relabelled = {
      ...reader(theirs, unmoved, 1),
      page: (_chain: string, afterSeq: number) => Promise.resolve(theirs.filter((c) => c.seq > afterSeq)),
    };
    const moved = await verifyCheckpoints(relabelled, publicKey, { chain: 'gw-2', head: { seq: 12, hash: hash(12) } });
    expect(moved).toMatchObject({ ok: false, broken: { what: 'the checkpoint of seq 10 (signed 2026-01-01T00:00:00.000Z)' } });
    expect(moved.ok ? '' : moved.broken.problem).toMatch(/its signature does not hold/);
  });

  it('walks the checkpoints page by page and names the newest', async () => {
    const stored = checkpoints([
      [10, '2026-01-01T00:00:00Z'],
      [20, '2026-01-01T00:01:00Z'],
      [30, '2026-01-01T00:02:00Z'],
    ]);
    const chain = reader(stored, unmoved, 1);
    const result = await verifyCheckpoints(chain, publicKey, { chain: CHAIN, head: { seq: 35, hash: hash(35) }, pageSize: 2 });
    expect(result).toEqual({ ok: true, checkpoints: 3, newest: stored[2] });
    expect(chain.pages).toBe(3);
  });

  it('accepts checkpointed records that retention removed below a signed anchor', async () => {
    const stored = checkpoints([
      [10, '2026-01-01T00:00:00Z'],
      [20, '2026-03-01T00:00:00Z'],
    ]);
    const anchor = signedAnchor(15, '2026-02-15T00:00:00Z', 30);
    expect(
      await verifyCheckpoints(reader(stored, anchor, 16), publicKey, { chain: CHAIN, head: { seq: 25, hash: hash(25) } }),
    ).toMatchObject({
      ok: true,
      checkpoints: 2,
    });
  });

  describe('checkpoints retention pruned', () => {
    // Checkpoints at 5, 10, 20 and 30; retention moved the anchor to 15 and pruned those before 10.
    const all = checkpoints([
      [5, '2026-01-01T00:00:00Z'],
      [10, '2026-01-02T00:00:00Z'],
      [20, '2026-03-01T00:00:00Z'],
      [30, '2026-03-02T00:00:00Z'],
    ]);
    const anchor = signedAnchor(15, '2026-02-15T00:00:00Z', 30);
    const head = { seq: 35, hash: hash(35) };
    const verify = (kept: StoredCheckpoint[]) => verifyCheckpoints(reader(kept, anchor, 16), publicKey, { chain: CHAIN, head });

    it('passes when the first checkpoint left is the newest before the anchor, its predecessor gone', async () => {
      expect(await verify(all.slice(1))).toEqual({ ok: true, checkpoints: 3, newest: all[3] });
    });

    it('still checks the anchor against the newest checkpoint before it', async () => {
      const early = signedAnchor(15, '2026-01-20T00:00:00Z', 30);
      expect(await verifyCheckpoints(reader(all.slice(1), early, 16), publicKey, { chain: CHAIN, head })).toMatchObject({
        ok: false,
        broken: { what: 'the anchor (decision_chain_anchor, seq 15)' },
      });
    });

    it('fails when every checkpoint before the anchor is gone: the first left is past it', async () => {
      expect(await verify(all.slice(2))).toMatchObject({
        ok: false,
        broken: {
          what: 'the checkpoint of seq 20 (signed 2026-03-01T00:00:00.000Z)',
          problem: expect.stringMatching(/checkpoints were deleted or inserted$/) as string,
        },
      });
    });

    it('fails when one after the first left is gone, below the anchor or not', async () => {
      const belowAnchor = checkpoints([
        [5, '2026-01-01T00:00:00Z'],
        [10, '2026-01-02T00:00:00Z'],
        [12, '2026-01-03T00:00:00Z'],
        [20, '2026-03-01T00:00:00Z'],
      ]);
      expect(await verify([belowAnchor[0]!, belowAnchor[2]!, belowAnchor[3]!])).toMatchObject({
        ok: false,
        broken: { what: 'the checkpoint of seq 12 (signed 2026-01-03T00:00:00.000Z)' },
      });
      expect(await verify([all[1]!, all[3]!])).toMatchObject({
        ok: false,
        broken: { what: 'the checkpoint of seq 30 (signed 2026-03-02T00:00:00.000Z)' },
      });
    });
  });

  it('refuses an anchor retention could not have reached yet, allowing a few minutes of clock difference', async () => {
    const stored = checkpoints([
      [10, '2026-01-20T00:00:00Z'],
      [20, '2026-03-01T00:00:00Z'],
    ]);
    const justInside = signedAnchor(15, new Date(Date.parse('2026-01-20T00:00:00Z') + 30 * DAY - 60_000).toISOString(), 30);
    expect(
      await verifyCheckpoints(reader(stored, justInside, 16), publicKey, { chain: CHAIN, head: { seq: 25, hash: hash(25) } }),
    ).toMatchObject({
      ok: true,
    });
    const early = signedAnchor(15, '2026-02-15T00:00:00Z', 30);
    expect(
      await verifyCheckpoints(reader(stored, early, 16), publicKey, { chain: CHAIN, head: { seq: 25, hash: hash(25) } }),
    ).toMatchObject({
      ok: false,
      broken: {
        what: 'the anchor (decision_chain_anchor, seq 15)',
        problem: expect.stringMatching(/^it is newer than retention allows: seq 15 was stored after 2026-01-20T00:00:00\.000Z/) as string,
      },
    });
  });

  it('refuses an anchor that says it moved in the future', async () => {
    const anchor = signedAnchor(5, new Date(Date.now() + DAY).toISOString(), 30);
    expect(
      await verifyCheckpoints(reader(checkpoints([[10, '2026-01-01T00:00:00Z']]), anchor, 6), publicKey, {
        chain: CHAIN,
        head: { seq: 10, hash: hash(10) },
      }),
    ).toMatchObject({
      ok: false,
      broken: { problem: expect.stringMatching(/which is in the future$/) as string },
    });
  });

  it('passes an empty chain without checkpoints, and fails a non-empty one without any', async () => {
    expect(
      await verifyCheckpoints(reader([], unmoved, 1), publicKey, { chain: CHAIN, head: { seq: 0, hash: '0'.repeat(64) } }),
    ).toMatchObject({
      ok: true,
      checkpoints: 0,
    });
    expect(await verifyCheckpoints(reader([], unmoved, 1), publicKey, { chain: CHAIN, head: { seq: 3, hash: hash(3) } })).toMatchObject({
      ok: false,
      broken: { what: 'the checkpoints' },
    });
  });
});
