/** Failures of the operations tools (backup, restore, check, repair), printed as one line. */

/** A failure the tools print as their one-line error (exit 1). */
export class ToolError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ToolError'
  }
}

/** True when LevelDB refused to open a folder because another process (a server) holds its lock. */
export const isLevelLocked = (e: unknown): boolean => {
  const err = e as { code?: string, cause?: { code?: string } } | null
  return err?.code === 'LEVEL_LOCKED' || err?.cause?.code === 'LEVEL_LOCKED'
}
