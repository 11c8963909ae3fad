// A small seeded generator (mulberry32) for randomized tests: the same seed replays the same
// sequence, so a failure is reproduced from the seed it prints.

/** Numbers in [0, 1) from `seed`, the same sequence every time. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
