// `policy.evaluation: thread`: the policy is evaluated in a worker thread, so that its
// WebAssembly runs beside the event loop instead of on it (a gateway's main thread is its
// bound, BENCHMARKS.md). The main thread only serializes the input and posts it. Whatever
// calls evaluate() (an explanation's what-if alternatives) still evaluates inline, on an engine
// of the same bundle; the shadow policy has its own. It fails closed like the inline engine: a
// thread that cannot load the policy fails the load, and one that stops denies what it had in
// hand (500) and is started again.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { IdTable } from '../base/churn-free';
import { PolicyError } from '../base/errors';
import { projectRoot } from '../project-root';
import type { PolicyBundle } from './policy-bundle';
import type { PolicyEngine, PolicyEvaluation, PolicyInput } from './policy-engine';
import { failure, type WasmPolicyEngine } from './wasm-policy-engine';

/** What the thread is started with (its workerData). */
export interface ThreadSetup {
  wasm: Uint8Array;
  data: Record<string, unknown>;
  revision: string;
  entrypoint: string;
}

/** One evaluation asked of the thread. */
export interface ThreadRequest {
  id: number;
  json: string;
  timeNs: number | undefined;
}

/** One evaluation answered by the thread. */
export interface ThreadAnswer {
  id: number;
  evaluation: PolicyEvaluation;
}

/**
 * The thread's messages: once `ready` or `failed`, then one list of answers per list of
 * requests. Requests go in lists, one per turn of the event loop: a message costs a wake-up
 * of the other thread and a structured clone, ~20 µs of the main thread each under load.
 */
export type ThreadMessage = { ready: true } | { failed: string } | ThreadAnswer[];

/** How long close() lets evaluations in hand finish before the thread is stopped (they are then denied). */
const CLOSE_GRACE_MS = 1_000;

export class ThreadedPolicyEngine implements PolicyEngine {
  private worker: Worker | undefined;
  private starting: Promise<Worker> | undefined;
  /** Each request's resolver by its id; not a Map, whose churn under load promotes every request (churn-free.ts). */
  private readonly pending = new IdTable<(evaluation: PolicyEvaluation) => void>();
  /** The requests each thread has been sent and not answered: what it takes down with it if it stops. */
  private readonly inHand = new WeakMap<Worker, IdTable<true>>();
  private nextId = 0;
  /** Requests of this turn of the event loop, posted together once it ends. */
  private queued: ThreadRequest[] = [];
  private closed = false;
  private drained: (() => void) | undefined;

  private constructor(
    /** The same bundle's engine on this thread: evaluate(), and serializing inputs. */
    private readonly local: WasmPolicyEngine,
    private readonly setup: ThreadSetup,
  ) {}

  /** Starts the thread and waits until it has loaded the policy; throws a PolicyError if it cannot. */
  static async start(local: WasmPolicyEngine, bundle: PolicyBundle, entrypoint: string): Promise<ThreadedPolicyEngine> {
    const engine = new ThreadedPolicyEngine(local, { wasm: bundle.wasm, data: bundle.data, revision: bundle.revision, entrypoint });
    await engine.thread();
    return engine;
  }

  get revision(): string {
    return this.local.revision;
  }

  /** Inline, on this thread (an explanation's what-if alternatives). */
  evaluate(input: PolicyInput): PolicyEvaluation {
    return this.local.evaluate(input);
  }

  /** In the policy thread. Never rejects: whatever goes wrong is a deny that says so. */
  evaluateOffThread(input: PolicyInput): Promise<PolicyEvaluation> {
    let json: string;
    try {
      json = this.local.inputJson(input);
    } catch {
      // The inline engine turns the same input into the same failure decision.
      return Promise.resolve(this.local.evaluate(input));
    }
    const request: ThreadRequest = { id: this.nextId++, json, timeNs: input.request.time_ns };
    return new Promise((resolve) => {
      this.pending.set(request.id, resolve);
      if (this.queued.length === 0) setImmediate(() => this.post());
      this.queued.push(request);
    });
  }

  /** Lets the evaluations in hand finish (for a moment), then stops the thread. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.pending.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, CLOSE_GRACE_MS);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    await this.starting?.catch(() => undefined);
    await this.worker?.terminate();
  }

  /** Sends the turn's requests to the thread, started first if it is not running. */
  private post(): void {
    // A thread that stopped meanwhile has already denied them all.
    const requests = this.queued.filter((request) => this.pending.has(request.id));
    this.queued = [];
    if (requests.length === 0) return;
    const worker = this.worker;
    if (worker) {
      this.send(worker, requests);
      return;
    }
    this.thread().then(
      (started) => this.send(started, requests),
      (error: Error) => {
        for (const request of requests) this.settle(request.id, this.failed(`the policy thread could not be started: ${error.message}`));
      },
    );
  }

  private send(worker: Worker, requests: ThreadRequest[]): void {
    const held = this.inHand.get(worker)!;
    for (const request of requests) held.set(request.id, true);
    worker.postMessage(requests);
  }

  /** The running thread, or a new one once it has loaded the policy. */
  private thread(): Promise<Worker> {
    if (this.worker) return Promise.resolve(this.worker);
    if (this.closed) return Promise.reject(new Error('the policy engine is closed'));
    this.starting ??= new Promise<Worker>((resolve, reject) => {
      const worker = new Worker(threadEntry(), { workerData: this.setup });
      worker.unref();
      const held = new IdTable<true>();
      this.inHand.set(worker, held);
      let ready = false;
      let down = false;
      worker.on('message', (message: ThreadMessage) => {
        if (Array.isArray(message)) {
          for (const answer of message) {
            held.delete(answer.id);
            this.settle(answer.id, answer.evaluation);
          }
        } else if ('ready' in message) {
          ready = true;
          this.worker = worker;
          resolve(worker);
        } else {
          reject(new PolicyError(`the policy thread could not load the policy: ${message.failed}`));
          void worker.terminate();
        }
      });
      // 'error' and then 'exit' for one crash: the first says why, and a thread started since
      // keeps what it has in hand.
      const stopped = (reason: string) => {
        if (down) return;
        down = true;
        if (this.worker === worker) this.worker = undefined;
        if (!ready) reject(new PolicyError(`the policy thread stopped before it was ready: ${reason}`));
        // What it had in hand is denied; the next evaluation starts another thread.
        for (const id of held.heldIds()) {
          held.delete(id);
          this.settle(id, this.failed(`the policy thread stopped: ${reason}`));
        }
      };
      worker.on('error', (error) => stopped(error.message));
      worker.on('exit', (code) => stopped(`it exited with code ${code}`));
    }).finally(() => (this.starting = undefined));
    return this.starting;
  }

  private settle(id: number, evaluation: PolicyEvaluation): void {
    const resolve = this.pending.get(id);
    if (!resolve) return;
    this.pending.delete(id);
    resolve(evaluation);
    if (this.pending.size === 0) this.drained?.();
  }

  private failed(problem: string): PolicyEvaluation {
    return { decision: failure(500, problem), revision: this.revision, latencyUs: 0 };
  }
}

/**
 * The compiled entry beside this file; when this runs from the TypeScript sources (the tests),
 * the build's, which the tests' global setup rebuilds when a source is newer than it.
 */
function threadEntry(): string {
  const entry = __filename.endsWith('.ts')
    ? path.join(projectRoot, 'dist', 'authz', 'policy-thread.js')
    : path.join(__dirname, 'policy-thread.js');
  if (!existsSync(entry)) {
    throw new PolicyError(`policy.evaluation is "thread" but the policy thread's compiled entry is missing (${entry}): run npm run build`);
  }
  return entry;
}
