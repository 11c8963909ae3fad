// The part of the WebAssembly JavaScript API the policy engine uses (Node has it; the
// ES2022 lib without DOM does not declare it).
declare namespace WebAssembly {
  // eslint-disable-next-line @typescript-eslint/no-empty-interface
  interface Module {}
  interface Memory {
    readonly buffer: ArrayBuffer;
  }
  function compile(bytes: ArrayBuffer | ArrayBufferView): Promise<Module>;
}
