// The part of the WebAssembly JavaScript API the policy engine uses (Node has it; the
// ES2022 lib without DOM does not declare it).
declare namespace WebAssembly {
  /** A compiled module: opaque to us, only handed back to the runtime. */
  type Module = object;
  interface Memory {
    readonly buffer: ArrayBuffer;
  }
  function compile(bytes: ArrayBuffer | ArrayBufferView): Promise<Module>;
}
