/**
 * The chat's stylesheet as embedding pages get it (pure): the rules for the `.parley` elements
 * themselves as they are, and those after the `---- scoped ----` marker limited to the inside of
 * `.parley` elements (`@scope`), so the host page keeps its own look.
 */
const MARKER = '/* ---- scoped ----'

export const scopedStyles = (css: string): string => {
  const at = css.indexOf(MARKER)
  if (at < 0) return `@scope (.parley) {\n${css}\n}\n`
  return `${css.slice(0, at)}@scope (.parley) {\n${css.slice(at)}\n}\n`
}
