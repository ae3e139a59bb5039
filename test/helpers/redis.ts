/** Redis for tests: the machine's server (127.0.0.1:6379, or PARLEY_TEST_REDIS_URL); each test uses its own key prefix. */
import { randomBytes } from 'node:crypto'

export const REDIS_URL = process.env.PARLEY_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** A fresh prefix for one test run's channels and keys. */
export const testPrefix = (): string => `parley-test-${randomBytes(6).toString('hex')}:`
