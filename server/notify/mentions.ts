/**
 * Mentions: a text mentions user `u` when it holds `@u` not glued to more id characters
 * (`@bob,` and `@bob.` mention bob; `@bobby` and `@bob.smith` do not).
 */

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')

/** Whether `text` mentions `userId` as `@userId`. */
export const isMentioned = (text: string, userId: string): boolean =>
  new RegExp(`(^|[^A-Za-z0-9_\\-.~@])@${escape(userId)}(?![A-Za-z0-9_\\-~]|\\.[A-Za-z0-9_\\-~])`).test(text)
