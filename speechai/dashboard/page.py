"""The dashboard page: one HTML document with inline CSS and vanilla JavaScript (no build step, no CDN).

Kept as a Python string so it ships inside the package whatever the installer does with data files.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SpeechAI — live campaign</title>
<style>
  :root { --fg:#1b1f24; --muted:#57606a; --bg:#f6f8fa; --card:#fff; --line:#d0d7de; --accent:#0969da;
          --ok:#1a7f37; --warn:#9a6700; --bad:#cf222e; }
  * { box-sizing: border-box; }
  body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--fg);
         background:var(--bg); }
  header { display:flex; align-items:center; gap:1rem; padding:.6rem 1.2rem; background:#24292f; color:#fff; }
  header h1 { font-size:1.1rem; margin:0; flex:1; }
  header .meta { font-size:.85rem; opacity:.85; }
  main { max-width:1280px; margin:0 auto; padding:1rem 1.2rem 2rem; }
  section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:.8rem 1rem;
            margin-bottom:1rem; }
  h2 { font-size:1rem; margin:.1rem 0 .6rem; }
  .grid { display:grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap:.6rem; }
  .stat { border:1px solid var(--line); border-radius:6px; padding:.5rem .7rem; }
  .stat .v { font-size:1.5rem; font-weight:600; }
  .stat .k { color:var(--muted); font-size:.8rem; }
  .cols { display:grid; grid-template-columns: 2fr 1fr; gap:1rem; }
  @media (max-width: 900px) { .cols { grid-template-columns: 1fr; } }
  table { border-collapse:collapse; width:100%; font-size:.9rem; }
  th, td { text-align:left; padding:.35rem .5rem; border-bottom:1px solid var(--line); vertical-align:top; }
  th { color:var(--muted); font-weight:600; }
  td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; }
  progress { width:100%; height:.8rem; }
  .badge { display:inline-block; padding:0 .45rem; border-radius:1rem; font-size:.8rem; border:1px solid; }
  .badge.active { color:var(--ok); } .badge.paused { color:var(--warn); } .badge.cancelled { color:var(--bad); }
  button { font:inherit; padding:.25rem .7rem; border:1px solid var(--line); border-radius:6px; background:#f6f8fa;
           cursor:pointer; }
  button:hover { background:#eaeef2; }
  button:focus-visible, input:focus-visible { outline:3px solid var(--accent); outline-offset:1px; }
  button.primary { background:var(--accent); color:#fff; border-color:var(--accent); }
  input { font:inherit; padding:.3rem .5rem; border:1px solid var(--line); border-radius:6px; }
  label { font-weight:600; margin-right:.4rem; }
  #login { max-width:420px; margin:4rem auto; }
  #feed { list-style:none; margin:0; padding:0; max-height:340px; overflow:auto; font:12px/1.4 ui-monospace,
          SFMono-Regular, Menlo, monospace; }
  #feed li { padding:.1rem 0; border-bottom:1px dotted var(--line); }
  #feed .warning { color:var(--warn); } #feed .error { color:var(--bad); }
  .muted { color:var(--muted); } .error-text { color:var(--bad); }
  .hidden { display:none !important; }
  .sr-only { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); white-space:nowrap; }
  svg text { font-size:10px; fill:var(--muted); }
</style>
</head>
<body>
<header>
  <h1>SpeechAI — live campaign</h1>
  <span class="meta" id="clock" aria-live="off"></span>
  <span class="meta" id="conn" role="status">not connected</span>
  <button id="logout" class="hidden" type="button">Sign out</button>
</header>
<main>
  <section id="login" aria-labelledby="login-title">
    <h2 id="login-title">Sign in</h2>
    <form id="login-form">
      <p><label for="token">API key</label>
         <input id="token" name="token" type="password" autocomplete="current-password" required size="34"></p>
      <p class="muted">The key stays in this browser tab only (session storage).</p>
      <p><button class="primary" type="submit">Sign in</button> <span id="login-error" class="error-text"
         role="alert"></span></p>
    </form>
  </section>

  <div id="app" class="hidden">
    <section aria-labelledby="totals-title">
      <h2 id="totals-title">Now</h2>
      <div class="grid" id="totals" aria-live="polite">
        <div class="stat"><div class="v" id="in-flight">–</div><div class="k">calls in flight</div></div>
        <div class="stat"><div class="v" id="calls">–</div><div class="k">calls placed</div></div>
        <div class="stat"><div class="v" id="finished">–</div><div class="k">calls finished</div></div>
        <div class="stat"><div class="v" id="contacts">–</div><div class="k">contacts</div></div>
        <div class="stat"><div class="v" id="successes">–</div><div class="k">successes</div></div>
        <div class="stat"><div class="v" id="cost">–</div><div class="k">cost so far</div></div>
        <div class="stat"><div class="v" id="promises">–</div><div class="k">promises to pay</div></div>
      </div>
      <p class="muted" id="outcomes"></p>
    </section>

    <section aria-labelledby="batches-title">
      <h2 id="batches-title">Batches</h2>
      <p id="action-msg" role="status" class="muted"></p>
      <table>
        <thead><tr><th scope="col">batch</th><th scope="col">status</th><th scope="col" style="width:22%">progress</th>
          <th scope="col" class="num">pending</th><th scope="col" class="num">retry</th>
          <th scope="col" class="num">in flight</th><th scope="col" class="num">done</th>
          <th scope="col" class="num">failed</th><th scope="col" class="num">excluded</th>
          <th scope="col" class="num">cost</th><th scope="col">actions</th></tr></thead>
        <tbody id="batches"></tbody>
      </table>
    </section>

    <div class="cols">
      <section aria-labelledby="hours-title">
        <h2 id="hours-title">Calls per local hour</h2>
        <div id="hours"></div>
      </section>
      <section aria-labelledby="job-title">
        <h2 id="job-title">Find a job</h2>
        <form id="job-form">
          <label for="job-id">Job id</label><input id="job-id" name="job" required size="26">
          <button type="submit">Find</button>
        </form>
        <div id="job" aria-live="polite"></div>
      </section>
    </div>

    <section aria-labelledby="feed-title">
      <h2 id="feed-title">Live events</h2>
      <ol id="feed" aria-live="off" aria-label="latest runtime events, newest first"></ol>
    </section>
  </div>
</main>
<script>
"use strict";
const KEY = "speechai-token";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(KEY);
let streamAbort = null;

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
}
let currency = "USD";
function money(cents) {
  if (cents == null) return "–";
  const amount = (cents / 100).toFixed(2);
  return currency === "USD" ? "$" + amount : amount + " " + (currency === "mixed" ? "(mixed currencies)" : currency);
}
function pct(r) { return r == null ? "–" : (r * 100).toFixed(1) + "%"; }

async function api(path, options = {}) {
  const resp = await fetch(path, {...options, headers: {...(options.headers || {}), Authorization: "Bearer " + token}});
  if (resp.status === 401) { signOut("The key was refused."); throw new Error("unauthorized"); }
  return resp;
}

function showApp(on) {
  $("login").classList.toggle("hidden", on);
  $("app").classList.toggle("hidden", !on);
  $("logout").classList.toggle("hidden", !on);
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  token = null;
  if (streamAbort) streamAbort.abort();
  showApp(false);
  $("conn").textContent = "not connected";
  $("login-error").textContent = message || "";
  $("token").focus();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  token = $("token").value.trim();
  const resp = await fetch("/dashboard/summary", {headers: {Authorization: "Bearer " + token}});
  if (!resp.ok) { $("login-error").textContent = resp.status === 401 ? "Wrong key." : "Error " + resp.status; return; }
  sessionStorage.setItem(KEY, token);
  $("token").value = "";
  start(await resp.json());
});
$("logout").addEventListener("click", () => signOut(""));

function start(first) {
  showApp(true);
  $("login-error").textContent = "";
  if (first) render(first);
  stream();
}

function render(s) {
  $("clock").textContent = "business time " + s.time.replace("T", " ").slice(0, 16) + " UTC";
  const t = s.totals || {};
  currency = s.currency || "USD";
  $("in-flight").textContent = s.in_flight ?? "–";
  $("calls").textContent = t.calls ?? "–";
  $("finished").textContent = t.finished ?? "–";
  $("contacts").textContent = t.contacts == null ? "–" : t.contacts + " (" + pct(t.contact_rate) + ")";
  $("successes").textContent = t.successes == null ? "–" : t.successes + " (" + pct(t.success_rate) + ")";
  $("cost").textContent = money(t.cost_cents);
  $("promises").textContent = t.promises ?? "–";
  const outs = Object.entries(s.outcomes || {}).map(([k, v]) => k.replace("_", " ") + " " + v).join(" · ");
  $("outcomes").textContent = outs ? "Outcomes: " + outs : "No calls finished yet.";
  renderBatches(s.batches || [], s.cost_by_batch || {});
  renderHours(s.hours || []);
}

function renderBatches(batches, cost) {
  const body = $("batches");
  const focused = document.activeElement && document.activeElement.dataset.key;
  body.innerHTML = batches.map((b) => {
    const j = b.jobs, name = esc(b.name || b.id);
    const actions = b.status === "cancelled" ? "" :
      (b.status === "paused"
        ? `<button type="button" data-act="resume" data-batch="${esc(b.id)}" data-key="resume:${esc(b.id)}"
             aria-label="Resume batch ${esc(b.id)}">Resume</button>`
        : `<button type="button" data-act="pause" data-batch="${esc(b.id)}" data-key="pause:${esc(b.id)}"
             aria-label="Pause batch ${esc(b.id)}">Pause</button>`) +
      ` <button type="button" data-act="cancel" data-batch="${esc(b.id)}" data-key="cancel:${esc(b.id)}"
           aria-label="Cancel batch ${esc(b.id)}">Cancel</button>`;
    return `<tr data-batch="${esc(b.id)}">
      <th scope="row">${name}<div class="muted">${esc(b.id)} · ${esc(b.account)}</div></th>
      <td><span class="badge ${esc(b.status)}" data-role="status">${esc(b.status)}</span>
          <div class="muted">${esc(b.why)}</div></td>
      <td><progress max="${b.total}" value="${b.finished}" aria-label="${name}: ${b.finished} of ${b.total} finished">
          </progress><div class="muted" data-role="progress">${b.finished} / ${b.total} finished</div></td>
      <td class="num">${j.pending}</td><td class="num">${j.retry_scheduled}</td><td class="num">${j.in_flight}</td>
      <td class="num" data-role="done">${j.done}</td><td class="num">${j.failed}</td><td class="num">${j.excluded}</td>
      <td class="num">${money(cost[b.id])}</td><td>${actions}</td></tr>`;
  }).join("") || `<tr><td colspan="11" class="muted">No batches.</td></tr>`;
  if (focused) { const again = body.querySelector(`[data-key="${CSS.escape(focused)}"]`); if (again) again.focus(); }
}

$("batches").addEventListener("click", async (ev) => {
  const btn = ev.target.closest("button[data-act]");
  if (!btn) return;
  const id = btn.dataset.batch, act = btn.dataset.act;
  if (act === "cancel" && !confirm(`Cancel batch ${id}? It cannot be resumed.`)) return;
  const resp = await api(`/batches/${encodeURIComponent(id)}/${act}`, {method: "POST"});
  const body = await resp.json().catch(() => ({}));
  $("action-msg").textContent = resp.ok ? `Batch ${id}: ${body.status}`
    : `Batch ${id}: ${body.detail || body.error || resp.status}`;
  const fresh = await api("/dashboard/summary");
  if (fresh.ok) render(await fresh.json());
});

function renderHours(hours) {
  const by = new Map(hours.map((h) => [h.hour, h]));
  const max = Math.max(1, ...hours.map((h) => h.calls));
  const W = 24 * 18 + 30, H = 140, base = 115;
  let bars = "";
  for (let h = 0; h < 24; h++) {
    const row = by.get(h) || {calls: 0, successes: 0};
    const x = 28 + h * 18, hc = (row.calls / max) * 100, hs = (row.successes / max) * 100;
    bars += `<rect x="${x}" y="${base - hc}" width="14" height="${hc}" fill="#9ec5fe">` +
      `<title>${h}:00 — ${row.calls} calls</title></rect>`;
    bars += `<rect x="${x}" y="${base - hs}" width="14" height="${hs}" fill="#1a7f37">` +
      `<title>${h}:00 — ${row.successes} successes</title></rect>`;
    if (h % 3 === 0) bars += `<text x="${x}" y="${base + 14}">${h}</text>`;
  }
  const total = hours.reduce((a, h) => a + h.calls, 0);
  const busiest = hours.slice().sort((a, b) => b.calls - a.calls)[0];
  const label = total ? `Calls per local hour: ${total} calls, busiest hour ${busiest.hour}:00 with ${busiest.calls}` :
    "Calls per local hour: no calls yet";
  $("hours").innerHTML = `<svg role="img" aria-label="${esc(label)}" viewBox="0 0 ${W} ${H}" width="100%">
    <line x1="26" y1="${base}" x2="${W}" y2="${base}" stroke="#d0d7de"/>
    <text x="0" y="${base - 96}">${max}</text><text x="0" y="${base}">0</text>${bars}</svg>
    <p class="muted">light: calls · green: successes</p>`;
}

$("job-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const id = $("job-id").value.trim();
  const resp = await api(`/jobs/${encodeURIComponent(id)}`);
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    $("job").innerHTML = `<p class="error-text">${esc(body.detail || body.error || resp.status)}</p>`;
    return;
  }
  const tail = (p) => "…" + String(p || "").slice(-4);
  const when = (a) => esc((a.created_at || "").replace("T", " ").slice(0, 16));
  const rows = (body.attempts || []).map((a) => `<tr><td>${when(a)}</td>
      <td>${esc(tail(a.phone))}</td><td>${esc(a.outcome || (a.placed === false ? "not placed" : "…"))}</td>
      <td>${esc(a.disconnection_reason || "")}</td><td class="num">${a.cost_cents ?? ""}</td></tr>`).join("");
  $("job").innerHTML = `<p><strong data-role="job-state">${esc(body.state)}</strong> · batch ${esc(body.batch_id)} ·
      ${esc(body.last_reason || "")}</p>
    <table><thead><tr><th scope="col">when (UTC)</th><th scope="col">phone</th><th scope="col">outcome</th>
      <th scope="col">reason</th><th scope="col" class="num">cents</th></tr></thead><tbody>${rows ||
      '<tr><td colspan="5" class="muted">No attempts yet.</td></tr>'}</tbody></table>`;
});

function feed(item) {
  const li = document.createElement("li");
  li.className = item.level || "";
  const extra = ["batch_id", "job_id", "outcome", "state", "action", "webhook_event", "reason", "error"]
    .filter((k) => item[k] != null).map((k) => k + "=" + item[k]).join(" ");
  li.textContent = `${(item.timestamp || "").slice(11, 19)} ${item.event} ${extra}`;
  const list = $("feed");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

async function stream() {
  if (streamAbort) streamAbort.abort();
  const mine = new AbortController();
  streamAbort = mine;
  while (token && !mine.signal.aborted) {
    try {
      const resp = await api("/events", {signal: mine.signal});
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      $("conn").textContent = "live";
      const reader = resp.body.getReader(), decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += decoder.decode(value, {stream: true});
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, cut); buf = buf.slice(cut + 2);
          let kind = "message", data = "";
          for (const line of frame.split("\n")) {
            if (line.startsWith("event: ")) kind = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (!data) continue;
          const obj = JSON.parse(data);
          if (kind === "summary") render(obj); else if (kind === "log") feed(obj);
        }
      }
    } catch (err) {
      if (mine.signal.aborted || !token) return;
      $("conn").textContent = "reconnecting…";
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

if (token) {
  api("/dashboard/summary").then((r) => r.ok ? r.json() : null).then((s) => s && start(s)).catch(() => {});
} else {
  showApp(false);
  $("token").focus();
}
</script>
</body>
</html>
"""
