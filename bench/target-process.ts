// One benchmark target in its own process: started with `fork(target-process.js)`, it
// receives {start: kind, settings}, answers {ready: url}, answers {memory} on request, and
// exits cleanly on {stop} (flushing a CPU profile when started with --cpu-prof).
import { startTarget, type StartedTarget, type TargetKind, type TargetSettings } from './targets';

type Message = { start: TargetKind; settings: TargetSettings } | { memory: true } | { stop: true };

let target: StartedTarget | undefined;

// The benchmark went away (finished or failed): never linger as an orphan.
process.on('disconnect', () => process.exit(0));

process.on('message', (message: Message) => {
  if ('start' in message) {
    startTarget(message.start, message.settings).then(
      (started) => {
        target = started;
        process.send?.({ ready: started.url });
      },
      (error: unknown) => {
        process.send?.({ failed: String((error as Error).stack ?? error) });
        process.exit(1);
      },
    );
  } else if ('memory' in message) {
    const rssBeforeGc = process.memoryUsage.rss();
    // With --expose-gc, what is measured is what the process keeps, not garbage not yet collected.
    (globalThis as { gc?: () => void }).gc?.();
    const usage = process.memoryUsage();
    process.send?.({ memory: { rssBeforeGc, rss: usage.rss, heapUsed: usage.heapUsed, external: usage.external, arrayBuffers: usage.arrayBuffers } });
  } else if ('stop' in message) {
    const stopping = target ? target.close() : Promise.resolve();
    void stopping.finally(() => process.exit(0));
  }
});
