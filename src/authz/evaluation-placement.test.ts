import { expect } from '@jest/globals';
import { EvaluationPlacement, TO_INLINE_BELOW, TO_THREAD_ABOVE } from './evaluation-placement';

/** Where each of these arrivals (requests in flight as each came) was placed. */
const placements = (placement: EvaluationPlacement, inFlight: number[]) => inFlight.map((n) => (placement.arrive(n) ? 'thread' : 'inline'));
const times = (n: number, inFlight: number) => Array<number>(n).fill(inFlight);

describe('EvaluationPlacement', () => {
  it('auto: evaluates inline while requests come one at a time', () => {
    const placement = new EvaluationPlacement('auto');
    expect(new Set(placements(placement, times(1000, 1)))).toEqual(new Set(['inline']));
    expect(placement.placed()).toEqual({ thread: 0, inline: 1000 });
  });

  it('auto: moves to the thread once requests overlap, within a few arrivals, and back once they come alone again', () => {
    const placement = new EvaluationPlacement('auto');
    const rising = placements(placement, times(20, 32));
    expect(rising.slice(0, 4)).toEqual(times(4, 0).map(() => 'inline'));
    expect(rising.slice(5)).toEqual(times(15, 0).map(() => 'thread'));
    const falling = placements(placement, times(100, 1));
    const back = falling.indexOf('inline');
    expect(back).toBeGreaterThan(10);
    expect(falling.slice(back)).toEqual(times(100 - back, 0).map(() => 'inline'));
  });

  it(`auto: keeps its choice while the load stays between ${TO_INLINE_BELOW} and ${TO_THREAD_ABOVE} in flight`, () => {
    const fromInline = new EvaluationPlacement('auto');
    placements(fromInline, times(100, 1));
    expect(new Set(placements(fromInline, times(500, 5)))).toEqual(new Set(['inline']));
    const fromThread = new EvaluationPlacement('auto');
    placements(fromThread, times(100, 32));
    expect(new Set(placements(fromThread, [...times(250, 4), ...times(250, 5)]))).toEqual(new Set(['thread']));
  });

  it('thread and inline: always there, whatever the load', () => {
    const thread = new EvaluationPlacement('thread');
    const inline = new EvaluationPlacement('inline');
    const load = [...times(50, 1), ...times(50, 32)];
    expect(new Set(placements(thread, load))).toEqual(new Set(['thread']));
    expect(new Set(placements(inline, load))).toEqual(new Set(['inline']));
    expect(thread.placed()).toEqual({ thread: 100, inline: 0 });
  });
});
