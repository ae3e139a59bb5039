/**
 * How message texts and search queries are cut into words (contract §6, search): Unicode NFKD,
 * combining marks stripped, lower case, then runs of letters and digits. So `Café`, `CAFE` and
 * `café` are one word, and a query matches a message holding every one of its words.
 */

/** Longest word kept, in UTF-16 code units; longer runs are cut (both in texts and queries). */
export const MAX_WORD_LENGTH = 64

/** Words of a query taken into account; the rest are ignored. */
export const MAX_QUERY_WORDS = 16

/** Text folded for comparison: NFKD, without combining marks, lower case. */
export const foldText = (text: string): string => text.normalize('NFKD').replace(/\p{M}+/gu, '').toLowerCase()

/** The distinct words of `text`, in order of first appearance. */
export const wordsOf = (text: string): string[] => {
  const out = new Set<string>()
  for (const m of foldText(text).matchAll(/[\p{L}\p{N}]+/gu)) out.add(m[0].slice(0, MAX_WORD_LENGTH))
  return [...out]
}

/** The words a query asks for (at most MAX_QUERY_WORDS). */
export const queryWords = (q: string): string[] => wordsOf(q).slice(0, MAX_QUERY_WORDS)
