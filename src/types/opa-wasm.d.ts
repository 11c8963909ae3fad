// @open-policy-agent/opa-wasm ships types for its ES module build only; this declares the
// part of its CommonJS API that the gateway uses.
declare module '@open-policy-agent/opa-wasm' {
  export interface LoadedPolicy {
    /** Entrypoint names (`portcullis/decision`) to the numeric ids `evaluate` takes. */
    readonly entrypoints: Readonly<Record<string, number>>;
    /**
     * The result set: `[{ result: value }]`, or `[]` when the entrypoint is undefined for
     * this input. Serializes `input` itself (an ArrayBuffer is taken as UTF-8 JSON).
     * Throws a string (sometimes a plain object) when evaluation fails.
     */
    evaluate(input: unknown, entrypoint?: number | string): unknown;
    /** Replaces `data` for every later evaluation. */
    setData(data: object | ArrayBuffer): void;
    /** The instance's linear memory; it grows to fit the largest input and never shrinks. */
    readonly mem: WebAssembly.Memory;
    /** The WebAssembly instance: its exports include `builtins` (the built-ins it imports, by name). */
    readonly wasmInstance: { readonly exports: Record<string, unknown> };
  }

  /** As loadPolicy, synchronously (fine in Node for an already compiled module). */
  export function loadPolicySync(
    regoWasm: ArrayBuffer | ArrayBufferView | WebAssembly.Module,
    memoryDescriptor?: number | { initial: number; maximum?: number },
    customBuiltins?: Record<string, (...args: unknown[]) => unknown>,
  ): LoadedPolicy;

  /** Compiles and instantiates a policy built with `opa build -t wasm`. */
  export function loadPolicy(
    regoWasm: ArrayBuffer | ArrayBufferView | WebAssembly.Module,
    memoryDescriptor?: number | { initial: number; maximum?: number },
    customBuiltins?: Record<string, (...args: unknown[]) => unknown>,
  ): Promise<LoadedPolicy>;
}
