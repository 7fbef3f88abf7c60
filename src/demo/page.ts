/**
 * The page `sniffmux demo` serves at `/`. Self-contained (no external assets)
 * because the demo must work offline. Its WebSocket goes back to the host and
 * port the page came from, so the upgrade request arrives on the same
 * sniffmux port as the page and shows the mux routing it to the WS backend;
 * wss:// when the page itself arrived over TLS that sniffmux terminated.
 */
export const DEMO_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sniffmux demo</title>
<style>
  :root { color-scheme: light dark; --accent: #2f7de1; --ok: #1e9e5a; --bad: #d64545; }
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }
  h1 { margin-bottom: .25rem; }
  h1 span { color: var(--accent); }
  code { font: .9em ui-monospace, monospace; background: rgba(127,127,127,.15); padding: .1em .3em; border-radius: 4px; }
  #status { font-weight: 600; }
  #status.open { color: var(--ok); }
  #status.closed { color: var(--bad); }
  form { display: flex; gap: .5rem; margin: 1rem 0; flex-wrap: wrap; align-items: center; }
  input[type=text] { flex: 1; min-width: 10rem; padding: .4rem .6rem; font: inherit; }
  button { padding: .4rem .9rem; font: inherit; border: 0; border-radius: 6px; background: var(--accent); color: #fff; cursor: pointer; }
  #log { list-style: none; padding: 0; margin: 0; font: .9em ui-monospace, monospace; }
  #log li { padding: .2rem .5rem; border-bottom: 1px solid rgba(127,127,127,.2); }
  #log li.out { opacity: .6; }
  footer { margin-top: 2rem; font-size: .85em; opacity: .7; }
</style>
</head>
<body>
<h1><span>sniffmux</span> demo</h1>
<p>This page was served through <strong>sniffmux</strong>: it peeked at the first bytes of your
connection to <code id="origin"></code>, saw an HTTP request and spliced it to the demo HTTP backend.</p>
<p>The WebSocket below connects back to the <em>same</em> host and port. sniffmux recognises the
upgrade request and routes it to the WebSocket echo backend. Raw TCP clients on that port
(try <code>nc</code>) reach a plain echo server instead.</p>
<p>WebSocket: <span id="status">connecting…</span></p>
<form id="form">
  <input type="text" id="text" value="hello sniffmux" aria-label="message">
  <button type="submit">Send</button>
  <label><input type="checkbox" id="auto" checked> send every second</label>
</form>
<ul id="log"></ul>
<footer>Served by the sniffmux demo HTTP backend.</footer>
<script>
(() => {
  const $ = (id) => document.getElementById(id);
  const statusEl = $('status'), log = $('log');
  $('origin').textContent = location.protocol + '//' + location.host;
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  let ws, n = 0;

  function add(text, cls) {
    const li = document.createElement('li');
    li.textContent = text; // textContent: echoed data is never parsed as HTML
    if (cls) li.className = cls;
    log.prepend(li);
    while (log.children.length > 50) log.lastChild.remove();
  }
  function setStatus(text, cls) { statusEl.textContent = text; statusEl.className = cls; }
  function send(text) {
    if (ws && ws.readyState === WebSocket.OPEN) { ws.send(text); add('→ ' + text, 'out'); }
  }
  function connect() {
    ws = new WebSocket(url);
    ws.onopen = () => setStatus('open (' + url + ')', 'open');
    ws.onmessage = (e) => add('← ' + e.data);
    ws.onclose = () => { setStatus('closed, reconnecting…', 'closed'); setTimeout(connect, 2000); };
  }
  $('form').onsubmit = (e) => { e.preventDefault(); send($('text').value); };
  setInterval(() => { if ($('auto').checked) send('tick ' + (++n)); }, 1000);
  connect();
})();
</script>
</body>
</html>
`;
