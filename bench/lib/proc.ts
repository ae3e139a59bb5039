/**
 * CPU time and memory of a process, read from Linux /proc (so it works for any child process,
 * whatever it runs). CPU is user + system time in seconds; memory in bytes.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

let clockTicks: number | undefined

/** Kernel clock ticks per second (`getconf CLK_TCK`, normally 100). */
export const clockTicksPerSecond = (): number => {
  if (clockTicks === undefined) {
    try {
      const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
      clockTicks = Number.isFinite(n) && n > 0 ? n : 100
    } catch {
      clockTicks = 100
    }
  }
  return clockTicks
}

export interface ProcSample {
  /** user + system CPU seconds since the process started. */
  cpuSeconds: number
  /** Resident set size now (VmRSS), bytes. */
  rssBytes: number
  /** Peak resident set size (VmHWM), bytes. */
  peakRssBytes: number
}

/** Reads /proc/<pid>/stat and /proc/<pid>/status; throws if the process is gone. */
export const readProc = (pid: number): ProcSample => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  const ticks = Number(fields[11]) + Number(fields[12])
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)
    return m === null ? 0 : Number(m[1]) * 1024
  }
  return { cpuSeconds: ticks / clockTicksPerSecond(), rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') }
}

/** CPU seconds of this very process (user + system), from `process.cpuUsage()`. */
export const selfCpuSeconds = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

/** Measures CPU seconds of a process between `start()` and `stop()`. */
export class CpuMeter {
  readonly #read: () => number
  #start = 0

  constructor (read: () => number) {
    this.#read = read
  }

  static forPid (pid: number): CpuMeter { return new CpuMeter(() => readProc(pid).cpuSeconds) }
  static forSelf (): CpuMeter { return new CpuMeter(selfCpuSeconds) }

  start (): void { this.#start = this.#read() }
  /** CPU seconds since `start()`. */
  elapsed (): number { return this.#read() - this.#start }
}

/**
 * Waits until process `pid` has used less than `maxCores` cores over a window of `windowMs`
 * (it went quiet), or `capMs` passed. Resolves to the elapsed ms, or null at the cap.
 */
export const waitQuiet = async (pid: number, capMs: number, windowMs = 500, maxCores = 0.1): Promise<number | null> => {
  const start = Date.now()
  let prev = readProc(pid).cpuSeconds
  for (;;) {
    await new Promise(resolve => setTimeout(resolve, windowMs))
    const cur = readProc(pid).cpuSeconds
    if (cur - prev < maxCores * windowMs / 1000) return Date.now() - start
    if (Date.now() - start >= capMs) return null
    prev = cur
  }
}
