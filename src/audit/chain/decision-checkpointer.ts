// Signs this instance's decision chain's head every audit.checkpoint_interval_s, so a chain
// rewritten or cut behind the gateway's back no longer matches what was signed. Processes of one
// chain take turns (the chain's lock), checkpoint a seq once, and skip a round another one just
// did. The legacy chain, which no longer grows, is signed once more up to its head.
import { checkpointText, type CheckpointSigner } from './checkpoint-key';
import { LEGACY_CHAIN } from './decision-chain';
import type { PgDecisionCheckpointStore, StoredCheckpoint } from './pg-decision-checkpoint-store';

export interface CheckpointerOptions {
  /** This instance's chain. */
  chain: string;
  intervalMs: number;
  now?: () => Date;
  onError: (error: Error) => void;
  onCheckpoint?: (checkpoint: StoredCheckpoint) => void;
}

export class DecisionCheckpointer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(
    private readonly store: Pick<PgDecisionCheckpointStore, 'write'>,
    private readonly signer: CheckpointSigner,
    private readonly options: CheckpointerOptions,
  ) {}

  /** Checkpoints every interval, without keeping the process alive. */
  start(): void {
    this.timer = setInterval(() => {
      if (!this.running) this.running = this.checkpointSafely().finally(() => (this.running = undefined));
    }, this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /**
   * Signs the chain's head unless it is checkpointed already or another process of the chain did
   * so recently; returns what was stored. `chain` defaults to this instance's.
   */
  checkpoint(chain = this.options.chain): Promise<StoredCheckpoint | undefined> {
    const signedAt = (this.options.now ?? (() => new Date()))();
    return this.store.write(chain, (head, newest) => {
      if (head.seq === 0 || (newest && newest.seq >= head.seq)) return undefined;
      if (newest && signedAt.getTime() - newest.signedAt.getTime() < this.options.intervalMs / 2) return undefined;
      const claim = { seq: head.seq, hash: head.hash, signedAt, prevSeq: newest?.seq ?? null };
      return { ...claim, keyId: this.signer.keyId, signature: this.signer.sign(checkpointText({ chain, ...claim })) };
    });
  }

  private async checkpointSafely(): Promise<void> {
    try {
      for (const chain of [this.options.chain, LEGACY_CHAIN]) {
        const written = await this.checkpoint(chain);
        if (written) this.options.onCheckpoint?.(written);
      }
    } catch (error) {
      this.options.onError(
        new Error('the decision chain checkpoint could not be written; retrying at the next interval', { cause: error }),
      );
    }
  }
}
