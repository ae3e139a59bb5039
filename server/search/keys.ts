/**
 * Key builders of the search index (the store section `search`), versioned, in one place.
 *
 *   v1!p!<conv>!<word>!<createdAt>!<messageId>   1: a posting (the message holds the word)
 *   v1!d!<conv>!<messageId>                      Message: the message as indexed (what results show,
 *                                                and which postings to remove on an edit or delete)
 *   v1!b!<conv>                                  true: the conversation's history before the index is in it
 *   v1!w!<seq>                                   a logged message event not yet expanded into postings
 *
 * Times are 16 decimal digits so string order is number order; a posting's tail after its
 * `<word>!` prefix (`<createdAt>!<messageId>`) orders messages the same way for every word.
 * Words are letters and digits only and ids never contain `!`, so no prefix matches another's keys.
 */

const time = (ms: number): string => Math.max(0, Math.min(Number.MAX_SAFE_INTEGER, Math.floor(ms))).toString().padStart(16, '0')

/** A message's place in every posting list: newest last in key order. */
export const postingTail = (createdAt: number, messageId: string): string => `${time(createdAt)}!${messageId}`
export const wordPrefix = (conv: string, word: string): string => `v1!p!${conv}!${word}!`
export const postingKey = (conv: string, word: string, createdAt: number, messageId: string): string => wordPrefix(conv, word) + postingTail(createdAt, messageId)
export const convPostingsPrefix = (conv: string): string => `v1!p!${conv}!`
export const docPrefix = (conv: string): string => `v1!d!${conv}!`
export const docKey = (conv: string, messageId: string): string => docPrefix(conv) + messageId
export const backfillKey = (conv: string): string => `v1!b!${conv}`

export const LOG_PREFIX = 'v1!w!'
export const logKey = (seq: number): string => LOG_PREFIX + time(seq)
export const parseLogSeq = (key: string): number => Number(key.slice(LOG_PREFIX.length))

/** The range holding every key that starts with `prefix`. */
export const prefixRange = (prefix: string): { gte: string, lt: string } => ({ gte: prefix, lt: prefix + '\xff' })
