#!/usr/bin/env node
// The `parley` command (package.json `bin`). Node does not run TypeScript by itself: register
// tsx's loader first, then run the server's entry point with the same arguments.
import { register } from 'tsx/esm/api'

register()
await import('../server/main.ts')
