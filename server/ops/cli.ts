/**
 * The operations tools, one entry point: `node --import tsx server/ops/cli.ts <command> [flags]`
 * behind the npm scripts `backup`, `restore`, `check`, `repair` (docs/operations.md) and `migrate`
 * (docs/cluster.md).
 * Reads flags and PARLEY_SECRET; prints a summary; any failure is one line on stderr, exit 1.
 */
import { parseArgs } from 'node:util'
import { backupDataFolder } from './backup.ts'
import { checkBackupFile, checkDataFolder, formatReport } from './check.ts'
import { BackupFormatError } from './format.ts'
import { formatRepairReport, repairDataFolder } from './repair.ts'
import { restoreBackup } from './restore.ts'
import { formatMigrateReport, migrateToPostgres } from './migrate.ts'
import { ToolError } from './tool-error.ts'
import { isChatError } from '../../shared/errors.ts'

const USAGE = `Usage:
  npm run backup  -- --data DIR --to FILE [--secret S] [--url URL]
  npm run restore -- --from FILE --data DIR
  npm run check   -- --data DIR | --backup FILE
  npm run repair  -- --data DIR
  npm run migrate -- --from DIR --to postgres://user@host:5432/db[?schema=NAME]
`

type Flags = Record<string, string | undefined>

const need = (flags: Flags, name: string): string => {
  const v = flags[name]
  if (v === undefined || v === '') throw new ToolError(`--${name} is required\n${USAGE}`)
  return v
}

const commands: Record<string, (flags: Flags) => Promise<number>> = {
  async backup (flags) {
    const data = need(flags, 'data')
    const to = need(flags, 'to')
    const r = await backupDataFolder({ data, to, secret: flags.secret ?? process.env.PARLEY_SECRET, url: flags.url })
    process.stdout.write(`backup of ${data} written to ${to}: ${r.entries} entries, ${r.files} files, ${r.bytes} bytes, verified (${r.via === 'server' ? 'from the running server' : 'from the folder'})\n`)
    return 0
  },
  async restore (flags) {
    const from = need(flags, 'from')
    const data = need(flags, 'data')
    const r = await restoreBackup({ from, data })
    process.stdout.write(`restored ${r.entries} entries and ${r.files} files from ${from} (taken ${new Date(r.meta.createdAt).toISOString()}) into ${data}\n`)
    return 0
  },
  async check (flags) {
    if ((flags.data === undefined) === (flags.backup === undefined)) throw new ToolError(`give exactly one of --data DIR or --backup FILE\n${USAGE}`)
    const report = flags.data !== undefined ? await checkDataFolder(flags.data) : await checkBackupFile(flags.backup as string)
    process.stdout.write(formatReport(flags.data ?? flags.backup as string, report))
    return report.ok ? 0 : 1
  },
  async migrate (flags) {
    const from = need(flags, 'from')
    const to = need(flags, 'to')
    process.stdout.write(formatMigrateReport(from, await migrateToPostgres({ from, to })))
    return 0
  },
  async repair (flags) {
    const data = need(flags, 'data')
    process.stdout.write(formatRepairReport(data, await repairDataFolder(data)))
    return 0
  }
}

const main = async (): Promise<number> => {
  const [name, ...args] = process.argv.slice(2)
  const command = commands[name ?? '']
  if (command === undefined) throw new ToolError(`unknown command ${name ?? ''}\n${USAGE}`)
  const { values } = parseArgs({
    args,
    options: { data: { type: 'string' }, to: { type: 'string' }, from: { type: 'string' }, backup: { type: 'string' }, secret: { type: 'string' }, url: { type: 'string' } },
    strict: true
  })
  return await command(values)
}

try {
  process.exitCode = await main()
} catch (e) {
  const known = e instanceof ToolError || e instanceof BackupFormatError || isChatError(e) || (e as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
  process.stderr.write(`parley ${process.argv[2] ?? ''}: ${known ? (e as Error).message : String((e as Error).stack ?? e)}\n`)
  process.exitCode = 1
}
