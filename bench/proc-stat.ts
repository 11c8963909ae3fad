// CPU times from Linux's /proc/<pid>/stat and /proc/<pid>/task/<tid>/stat.

/** Clock ticks per second of /proc's times (USER_HZ, 100 on every Linux build that matters). */
const CLOCK_TICKS_PER_S = 100;

export interface StatTimes {
  ppid: number;
  /** utime + stime of the process or thread, in µs. */
  ownUs: number;
  /** cutime + cstime: its waited-for children's, in µs. */
  childrenUs: number;
}

/** The times in one stat line: fields after "pid (comm) " are state, ppid, … utime(14) stime(15) cutime(16) cstime(17), counted from 1. */
export function statTimes(stat: string): StatTimes {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const us = (ticks: number) => (ticks * 1e6) / CLOCK_TICKS_PER_S;
  return {
    ppid: Number(fields[1]),
    ownUs: us(Number(fields[11]) + Number(fields[12])),
    childrenUs: us(Number(fields[13]) + Number(fields[14])),
  };
}
