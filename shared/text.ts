/**
 * Display text that other people see (a user's `name`, a conversation's `subject`): no control
 * characters, no bidirectional overrides or isolates (U+202A–U+202E, U+2066–U+2069, which can make
 * a name read as another) and no lone surrogates (not Unicode; they break JSON and UTF-8 encoders).
 * Pure; the REST routes refuse such text with INVALID_REQUEST.
 */
import { ChatError } from './errors.ts'

// C0 controls (tab and newlines too: a name or subject is one line), DEL, C1 controls, bidi
// embeddings/overrides and isolates.
const FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/** Why `text` may not be shown as a name or subject, or null when it may. */
export const displayTextProblem = (text: string): string | null => {
  if (FORBIDDEN.test(text)) return 'must not contain control characters or bidirectional overrides'
  if (LONE_SURROGATE.test(text)) return 'must not contain lone surrogates'
  return null
}

/** Throws INVALID_REQUEST naming `field` when `text` is not fit to show. */
export const checkDisplayText = (text: string, field: string): void => {
  const problem = displayTextProblem(text)
  if (problem !== null) throw new ChatError('INVALID_REQUEST', `${field} ${problem}`)
}
