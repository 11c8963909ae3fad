// The policy thread's entry (`policy.evaluation: thread`), started by ThreadedPolicyEngine as a
// worker: it loads the bundle it is given into its own WasmPolicyEngine, says it is ready (or
// why it could not load it), and answers each list of serialized inputs with their evaluations.
import { parentPort, workerData } from 'node:worker_threads';
import { toError } from '../base/errors';
import type { ThreadMessage, ThreadRequest, ThreadSetup } from './threaded-policy-engine';
import { WasmPolicyEngine } from './wasm-policy-engine';

const port = parentPort!;
const setup = workerData as ThreadSetup;
const send = (message: ThreadMessage) => port.postMessage(message);

WasmPolicyEngine.create(
  { wasm: Buffer.from(setup.wasm), data: setup.data, revision: setup.revision, files: new Map() },
  setup.entrypoint,
).then(
  (engine) => {
    port.on('message', (requests: ThreadRequest[]) =>
      send(requests.map((request) => ({ id: request.id, evaluation: engine.evaluateJson(request.json, request.timeNs) }))),
    );
    send({ ready: true });
  },
  (error: unknown) => send({ failed: toError(error).message }),
);
