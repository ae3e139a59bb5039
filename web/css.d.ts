/** Stylesheets imported as text (esbuild's `text` loader, scoped by client/build.ts). */
declare module '*.css' {
  const css: string
  export default css
}
