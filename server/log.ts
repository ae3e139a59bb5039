/**
 * The process logger: JSON lines (pino) for machines, readable lines (pino-pretty) for a person
 * at a terminal. main.ts picks the format from the environment and whether stdout is a TTY.
 */
import { pino, type Logger } from 'pino'
import { build as prettyStream } from 'pino-pretty'

export type LogFormat = 'json' | 'pretty'

/** `PARLEY_LOG_FORMAT` when set (json|pretty), else pretty on a terminal and JSON otherwise. Null: not a format. */
export const logFormatFor = (setting: string | undefined, stdoutIsTTY: boolean): LogFormat | null => {
  if (setting === undefined || setting === '') return stdoutIsTTY ? 'pretty' : 'json'
  return setting === 'json' || setting === 'pretty' ? setting : null
}

export interface ProcessLogger {
  logger: Logger
  /** Writes out whatever is buffered (before `process.exit`). */
  flush: () => void
}

export const createProcessLogger = (format: LogFormat, level: string): ProcessLogger => {
  if (format === 'pretty') {
    // Synchronous: a terminal is read by a person, and nothing is left unwritten at exit.
    const stream = prettyStream({ sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' })
    return { logger: pino({ base: undefined, level }, stream), flush: () => {} }
  }
  // Asynchronous writes: a log line per connection must not stall the event loop.
  const destination = pino.destination({ sync: false })
  return { logger: pino({ base: undefined, level }, destination), flush: () => destination.flushSync() }
}
