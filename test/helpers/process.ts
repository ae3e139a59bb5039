/** Runs the real `parley` process (server/main.ts) for process-level tests. */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface RunningServer {
  child: ChildProcess
  url: string
  wsUrl: string
  output: () => string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** How the process is started: node with tsx on server/main.ts (as `npm start` does). */
const MAIN = ['--import', 'tsx', 'server/main.ts']

/**
 * Spawns the server (`entry`: node's arguments before `args`); resolves once it printed its
 * `listening on` line. `wrap` runs it under another command (e.g. `['strace', '-f', …]`).
 */
export const spawnServer = async (args: string[], env: Record<string, string> = {}, entry: string[] = MAIN, wrap: string[] = []): Promise<RunningServer> => {
  const command = [...wrap, process.execPath, ...entry, ...args]
  const child = spawn(command[0], command.slice(1), {
    cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.once('exit', (code, signal) => resolve({ code, signal })))
  const url = await new Promise<string>((resolve, reject) => {
    const check = (): void => {
      const m = /listening on (http:\/\/[^\s"]+)/.exec(out)
      if (m !== null) resolve(m[1])
    }
    child.stdout!.on('data', check)
    void exited.then(() => reject(new Error(`server exited before listening:\n${out}`)))
  })
  return { child, url, wsUrl: url.replace(/^http/, 'ws'), output: () => out, exited }
}

/** Runs `command` to completion, collecting its output. */
const runToEnd = async (command: string, args: string[], env: Record<string, string>): Promise<{ code: number | null, stdout: string, stderr: string }> => {
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | null>(resolve => child.once('exit', c => resolve(c)))
  return { code, stdout, stderr }
}

/** Runs the server to completion (for flags that make it exit). */
export const runServer = async (args: string[], env: Record<string, string> = {}): Promise<{ code: number | null, stdout: string, stderr: string }> =>
  await runToEnd(process.execPath, [...MAIN, ...args], env)

/** Runs an operations tool through its npm script (`npm run backup -- ...`, see docs/operations.md). */
export const runOps = async (command: 'backup' | 'restore' | 'check' | 'repair' | 'migrate', args: string[], env: Record<string, string> = {}): Promise<{ code: number | null, stdout: string, stderr: string }> =>
  await runToEnd('npm', ['run', '-s', command, '--', ...args], env)
