/**
 * Process flags and environment (contract §1). Pure: takes argv and env, returns the options
 * or throws a ConfigError whose message is the one line the process prints before exiting.
 */
import { parseArgs } from 'node:util'
import { parsePgUrl } from './storage/pg-url.ts'

export interface ProcessOptions {
  host: string
  port: number
  data: string
  secret: string | undefined
  /** Demo mode: the web UI may ask the server for user tokens. 'auto' = on while listening on loopback. */
  demo: 'auto' | 'on' | 'off'
  /** SMTP server URL for notification emails (smtp://user:pass@host:port), if any. */
  smtp: string | undefined
  /** fsync every storage batch before acknowledging it (default true). */
  fsync: boolean
  /** Disk space kept in reserve in the data folder, for LevelDB to open on a full disk. */
  reserveBytes: number
  /** PostgreSQL URL: keep everything there instead of the LevelDB folder (docs/cluster.md). */
  postgres: string | undefined
  /** Redis URL: run as one node of a cluster sharing the PostgreSQL database (docs/cluster.md). */
  redis: string | undefined
  /** Cluster mode: how long a node's presence outlives its last renewal (PARLEY_PRESENCE_TTL_MS). */
  presenceTtlMs: number
  help: boolean
}

export class ConfigError extends Error {}

export const HELP = `Usage: parley [options]

Options (each also read from the environment variable in brackets):
  --host HOST      interface to listen on [PARLEY_HOST] (default 127.0.0.1)
  --port PORT      port to listen on; 0 picks a free one [PARLEY_PORT] (default 1234)
  --data DIR       LevelDB folder [PARLEY_DATA] (default ./data)
  --secret SECRET  app secret that signs tokens [PARLEY_SECRET]
                   (default: generated on first start, kept in DIR/secret, owner-only)
  --demo MODE      auto|on|off: let the web UI sign in as any user [PARLEY_DEMO]
                   (default auto: on only while listening on a loopback address)
  --smtp URL       SMTP server for notification emails, smtp://user:pass@host:port [PARLEY_SMTP]
  --fsync on|off   fsync each storage batch before acknowledging it [PARLEY_FSYNC]
                   (default on; off survives a crash of the process but not a power cut)
  --postgres URL   keep everything in PostgreSQL instead of DIR [PARLEY_POSTGRES_URL]
                   postgres://user:password@host:5432/db[?schema=NAME] (default schema public);
                   tables are created or upgraded on start; the generated secret is kept there
  --redis URL      cluster mode (needs --postgres): nodes with the same database, Redis and
                   secret are one cluster [PARLEY_REDIS_URL] redis://[:password@]host:6379[/db]
  --help           print this help and exit

Environment only:
  PARLEY_LOG_LEVEL   trace|debug|info|warn|error|fatal (default info)
  PARLEY_LOG_FORMAT  json|pretty (default: pretty when stdout is a terminal, else json)
  PARLEY_RESERVE_MB  disk kept in reserve in DIR, given up so that storage opens on a full
                     disk (default 8)
  PARLEY_PRESENCE_TTL_MS  cluster mode: how long after a node stops renewing its presence (it
                     died) the other nodes forget it, in ms, 1000 to 30000 (default 10000)
`

export const parseProcessOptions = (argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ProcessOptions => {
  let values
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        data: { type: 'string' },
        secret: { type: 'string' },
        demo: { type: 'string' },
        smtp: { type: 'string' },
        fsync: { type: 'string' },
        postgres: { type: 'string' },
        redis: { type: 'string' },
        help: { type: 'boolean' }
      },
      strict: true,
      allowPositionals: false
    }))
  } catch (e) {
    throw new ConfigError(`${(e as Error).message.split('\n')[0]} (see --help)`)
  }
  const host = values.host ?? env.PARLEY_HOST ?? '127.0.0.1'
  if (host === '') throw new ConfigError('--host must not be empty')
  const portText = values.port ?? env.PARLEY_PORT ?? '1234'
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new ConfigError(`--port must be an integer from 0 to 65535, got ${JSON.stringify(portText)}`)
  }
  const data = values.data ?? env.PARLEY_DATA ?? './data'
  if (data === '') throw new ConfigError('--data must not be empty')
  const secret = values.secret ?? env.PARLEY_SECRET
  if (secret !== undefined && secret.length < 16) throw new ConfigError('--secret must be at least 16 characters')
  const demo = values.demo ?? env.PARLEY_DEMO ?? 'auto'
  if (demo !== 'auto' && demo !== 'on' && demo !== 'off') throw new ConfigError(`--demo must be auto, on or off, got ${JSON.stringify(demo)}`)
  const smtp = values.smtp ?? env.PARLEY_SMTP
  if (smtp !== undefined && !/^smtps?:\/\/[^\s]+$/.test(smtp)) throw new ConfigError('--smtp must be an smtp:// or smtps:// URL')
  const fsync = values.fsync ?? env.PARLEY_FSYNC ?? 'on'
  if (fsync !== 'on' && fsync !== 'off') throw new ConfigError(`--fsync must be on or off, got ${JSON.stringify(fsync)}`)
  const postgres = values.postgres ?? env.PARLEY_POSTGRES_URL
  if (postgres !== undefined) {
    try {
      parsePgUrl(postgres)
    } catch (e) {
      throw new ConfigError(`--postgres: ${(e as Error).message}`)
    }
  }
  const redis = values.redis ?? env.PARLEY_REDIS_URL
  if (redis !== undefined) {
    if (postgres === undefined) throw new ConfigError('--redis needs --postgres (the nodes of a cluster share one PostgreSQL database)')
    if (!/^rediss?:\/\/[^\s]+$/.test(redis)) throw new ConfigError('--redis must be a redis:// or rediss:// URL')
  }
  const reserveText = env.PARLEY_RESERVE_MB ?? '8'
  if (!/^\d{1,4}$/.test(reserveText)) throw new ConfigError(`PARLEY_RESERVE_MB must be a whole number of MiB, got ${JSON.stringify(reserveText)}`)
  const ttlText = env.PARLEY_PRESENCE_TTL_MS ?? '10000'
  const presenceTtlMs = Number(ttlText)
  if (!/^\d{4,5}$/.test(ttlText) || presenceTtlMs < 1000 || presenceTtlMs > 30_000) {
    throw new ConfigError(`PARLEY_PRESENCE_TTL_MS must be a whole number of ms from 1000 to 30000, got ${JSON.stringify(ttlText)}`)
  }
  return { host, port: Number(portText), data, secret, demo, smtp, fsync: fsync === 'on', reserveBytes: Number(reserveText) * 1024 * 1024, postgres, redis, presenceTtlMs, help: values.help ?? false }
}
