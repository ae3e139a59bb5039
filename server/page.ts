/** The page served at `/` until the web UI lands: what this server is and where to start. */
export const PLACEHOLDER_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Parley</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}code{background:#eee;padding:0 .2em}</style>
</head><body>
<h1>Parley is running</h1>
<p>A self-hostable chat sync engine on Yjs. This server speaks the y-websocket protocol on
<code>ws://HOST:PORT/&lt;conversationId&gt;?token=…</code> and a REST API under <code>/v1</code>.</p>
<p>Health: <a href="/healthz">/healthz</a> · Metrics: <a href="/metrics">/metrics</a></p>
</body></html>
`
