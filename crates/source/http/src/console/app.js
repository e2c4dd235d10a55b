// banhammer console: one static page, no build step. In `serve` mode it reads the admin API
// (`/v1/events`, a Server-Sent Events stream read through fetch so that the bearer token goes
// in a header, never in a URL) with the token the operator pastes, kept in sessionStorage.
// In `monitor` mode it reads `/ui/feed`, the monitor's state. Charts are plain SVG.
"use strict";

(function () {
  const MODE = document.documentElement.dataset.mode;
  const TOKEN_KEY = "banhammer.adminToken";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  // ---- small helpers ------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) e.append(c);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }
  function clock(unix) {
    const d = new Date(unix * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function dateTime(unix) {
    const d = new Date(unix * 1000);
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")} ${clock(unix)}`;
  }
  function duration(secs) {
    if (secs <= 0) return "0s";
    const d = Math.floor(secs / 86400), h = Math.floor(secs % 86400 / 3600),
      m = Math.floor(secs % 3600 / 60), s = Math.floor(secs % 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
    if (m) return `${m}m ${String(s).padStart(2, "0")}s`;
    return `${s}s`;
  }
  function fmtRate(x) {
    return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
  }
  let messageTimer = null;
  function say(text, kind) {
    const m = $("message");
    m.textContent = text;
    m.dataset.kind = kind || "info";
    m.hidden = false;
    clearTimeout(messageTimer);
    if (kind !== "error") messageTimer = setTimeout(() => { m.hidden = true; }, 5000);
  }
  function setConn(state, text) {
    const c = $("conn");
    c.dataset.state = state;
    c.textContent = text;
  }

  // Server time: the service's clock, so countdowns agree with it (and with a test's clock).
  let skew = 0;
  const serverNow = () => Date.now() / 1000 + skew;

  // ---- charts ---------------------------------------------------------------------------
  function barChart(node, series, classes, opts) {
    // `series`: arrays of equal length, stacked; drawn in a 600 × h box.
    const w = 600, h = opts.height, n = series[0].length || 1;
    const totals = series[0].map((_, i) => series.reduce((a, s) => a + s[i], 0));
    const max = Math.max(1, ...totals);
    node.replaceChildren();
    node.append(svg("line", { x1: 0, y1: h - 0.5, x2: w, y2: h - 0.5, class: "axis" }));
    const bw = w / n;
    for (let i = 0; i < n; i++) {
      let y = h;
      series.forEach((s, k) => {
        if (!s[i]) return;
        const bh = (s[i] / max) * (h - 4);
        y -= bh;
        const r = svg("rect", { x: i * bw + 0.5, y, width: Math.max(bw - 1, 0.5), height: bh, class: classes[k] });
        r.append(svg("title", {}));
        r.firstChild.textContent = opts.label(i, s[i], k);
        node.append(r);
      });
    }
  }
  function lineChart(node, values, opts) {
    const w = 600, h = opts.height, n = values.length;
    node.replaceChildren();
    const max = Math.max(1, opts.limit || 0, ...values);
    const x = (i) => (n <= 1 ? w : (i / (n - 1)) * w);
    const y = (v) => h - 2 - (v / max) * (h - 4);
    if (n) {
      const pts = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      node.append(svg("polygon", { points: `0,${h} ${pts.join(" ")} ${w},${h}`, class: "area" }));
      node.append(svg("polyline", { points: pts.join(" "), class: "line" }));
    }
    if (opts.limit) node.append(svg("line", { x1: 0, x2: w, y1: y(opts.limit), y2: y(opts.limit), class: "limit" }));
  }

  // ---- serve mode -----------------------------------------------------------------------
  const bans = new Map(); // token -> ban
  let log = []; // decisions, oldest first
  let metrics = [];
  let sort = { key: "from", dir: "desc" };
  let tokenHistory = null; // { token, decisions } while a token's whole history is shown
  let refetchAt = 0;

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
  function authHeaders(extra) {
    const h = Object.assign({}, extra || {});
    const t = token();
    if (t) h.Authorization = `Bearer ${t}`;
    return h;
  }
  async function api(method, path, body) {
    const init = { method, headers: authHeaders(body ? { "Content-Type": "application/json" } : {}) };
    if (body) init.body = JSON.stringify(body);
    const r = await fetch(path, init);
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    return { status: r.status, ok: r.ok, data };
  }
  function refusal(r) {
    if (r.status === 401) return "refused: a valid admin token is required (401)";
    if (r.status === 429) return "refused: too many failed attempts from this address (429)";
    return `refused (${r.status}): ${(r.data && r.data.error) || "no reason given"}`;
  }

  function renderBans() {
    const q = $("ban-search").value.trim().toLowerCase();
    const rows = [...bans.values()].filter((b) => !q || b.token.toLowerCase().includes(q) || b.rule.toLowerCase().includes(q));
    const dir = sort.dir === "asc" ? 1 : -1;
    rows.sort((a, b) => {
      const x = a[sort.key], y = b[sort.key];
      return (typeof x === "number" ? x - y : String(x).localeCompare(String(y))) * dir || a.token.localeCompare(b.token);
    });
    for (const th of document.querySelectorAll("#ban-table th[data-sort]")) {
      if (th.dataset.sort === sort.key) th.dataset.dir = sort.dir; else delete th.dataset.dir;
    }
    const body = $("ban-table").tBodies[0];
    body.replaceChildren(...rows.map((b) => {
      // `watch` has no admin API: its console is read only.
      const unban = MODE === "serve" ? el("button", { class: "danger", type: "button", text: "Unban", "data-token": b.token }) : "";
      if (unban) unban.addEventListener("click", () => doUnban(b.token, unban));
      return el("tr", { "data-token": b.token },
        el("td", { class: "mono", text: b.token }),
        el("td", { text: b.rule }),
        el("td", { class: "num hide-narrow", text: String(b.tier) }),
        el("td", { class: "num hide-narrow", text: String(b.value) }),
        el("td", { class: "hide-narrow", text: dateTime(b.from), title: `${Math.round(serverNow() - b.from)} s ago` }),
        el("td", { class: "num countdown", "data-until": String(b.until), text: duration(b.until - serverNow()) }),
        el("td", {}, unban));
    }));
    $("ban-count").textContent = String(bans.size);
    $("ban-empty").hidden = bans.size > 0;
  }
  function tickCountdowns() {
    const now = serverNow();
    let expired = false;
    for (const c of document.querySelectorAll("#ban-table .countdown")) {
      const left = Number(c.dataset.until) - now;
      c.textContent = duration(left);
      if (left < -2) expired = true;
    }
    // A ban extended since it was sent ends later than shown: ask again (not often).
    if (expired && MODE === "serve" && Date.now() > refetchAt) {
      refetchAt = Date.now() + 5000;
      refreshBans();
    }
  }
  async function refreshBans() {
    const r = await api("GET", "/v1/bans");
    if (!r.ok) return;
    bans.clear();
    for (const b of r.data.bans) bans.set(b.token, b);
    renderBans();
  }
  async function doUnban(tok, button) {
    button.disabled = true;
    const r = await api("DELETE", `/v1/bans/${encodeURIComponent(tok)}`);
    button.disabled = false;
    if (r.ok) {
      bans.delete(tok);
      renderBans();
      say(`Unbanned ${tok}.`);
    } else if (r.status === 404) {
      bans.delete(tok);
      renderBans();
      say(`${tok} was not banned any more.`);
    } else {
      say(`Unban of ${tok} ${refusal(r)}`, "error");
    }
  }
  async function doBan(ev) {
    ev.preventDefault();
    const tok = $("ban-token").value.trim();
    if (!tok) return;
    const reason = $("ban-reason").value.trim();
    const body = { token: tok, duration: $("ban-for").value.trim() };
    if (reason) body.reason = reason;
    const r = await api("POST", "/v1/bans", body);
    if (r.ok) { say(`Banned ${tok} for ${body.duration}.`); $("ban-token").value = ""; $("ban-reason").value = ""; }
    else say(`Ban of ${tok} ${refusal(r)}`, "error");
  }
  function fillBanForm() {
    const r = $("log-rule"), keepRule = r.value;
    r.replaceChildren(el("option", { value: "", text: "every rule" }), ...metrics.map((x) => el("option", { value: x.name, text: x.name })));
    r.value = keepRule;
  }


  function renderLog() {
    const rule = $("log-rule").value;
    const tok = $("log-token").value.trim().toLowerCase();
    const source = tokenHistory && tokenHistory.token.toLowerCase() === tok ? tokenHistory.decisions : log;
    const rows = source.filter((d) => (!rule || d.rule === rule) && (!tok || d.token.toLowerCase().includes(tok)));
    const shown = rows.slice(-300).reverse();
    $("log-table").tBodies[0].replaceChildren(...shown.map((d) => el("tr", {},
      el("td", { text: dateTime(d.at) }),
      el("td", { class: `verb-${d.verb}`, text: d.verb }),
      el("td", { class: "mono", text: d.token }),
      el("td", { text: d.rule }),
      el("td", { class: "num", text: String(d.tier) }),
      el("td", { class: "num", text: String(d.value) }),
      el("td", { text: d.verb === "BAN" || d.verb === "ALERT" || d.verb === "NOTIFY" ? clock(d.until) : "" }))));
  }
  function renderTimeline() {
    const nowMin = Math.floor(serverNow() / 60);
    const bansPer = new Array(60).fill(0), unbansPer = new Array(60).fill(0), alertsPer = new Array(60).fill(0);
    for (const d of log) {
      const ago = nowMin - Math.floor(d.at / 60);
      if (ago < 0 || ago >= 60) continue;
      const i = 59 - ago;
      if (d.verb === "BAN") bansPer[i]++;
      else if (d.verb === "UNBAN") unbansPer[i]++;
      else if (d.verb === "ALERT") alertsPer[i]++;
    }
    const names = ["bans", "unbans", "alerts"];
    barChart($("timeline-chart"), [bansPer, unbansPer, alertsPer], ["ban", "unban", "alert"], {
      height: 120,
      label: (i, v, k) => `${clock((nowMin - 59 + i) * 60)}: ${v} ${names[k]}`,
    });
  }
  function renderRates(r) {
    const list = $("rate-list");
    list.replaceChildren(...r.metrics.map((m) => {
      const now = m.per_second.length ? m.per_second[m.per_second.length - 1] : 0;
      const hour = m.per_minute.reduce((a, b) => a + b, 0);
      const chart = svg("svg", { viewBox: "0 0 600 36", preserveAspectRatio: "none", class: "chart", role: "img" });
      lineChart(chart, m.per_minute, { height: 36 });
      const spark = svg("svg", { viewBox: "0 0 600 36", preserveAspectRatio: "none", class: "chart", role: "img" });
      lineChart(spark, m.per_second, { height: 36 });
      return el("div", { class: "rate", "data-metric": m.metric },
        el("span", { class: "name", text: m.metric }),
        el("span", { class: "now", text: `${now}/s now · ${fmtRate(hour / 3600)}/s over the hour · ${m.total} total` }),
        el("span", { class: "muted small", text: "last minute, per second" }), el("span"),
        spark,
        el("span", { class: "muted small", text: "last hour, per minute" }), el("span"),
        chart);
    }));
    const body = $("busy-table").tBodies[0];
    body.replaceChildren(...r.busiest.map((b) => el("tr", {},
      el("td", { class: "mono", text: b.token }),
      el("td", { text: b.metric }),
      el("td", {}, ...b.tiers.map(([v, l], i) => {
        const share = Math.min(1, v / Math.max(1, l));
        const fill = el("span", { class: share >= 1 ? "hot" : share >= 0.7 ? "warn" : "" });
        fill.style.width = `${(share * 100).toFixed(0)}%`;
        return el("span", { class: "tier", title: `tier ${i}` }, el("span", { class: "meter" }, fill), `${v} / ${l}`);
      })))));
    $("busy-note").textContent = r.busiest_unavailable ? r.busiest_unavailable : r.busiest.length ? "" : "No token counted lately.";
  }

  function applyDecision(d) {
    log.push(d);
    if (log.length > 5000) log = log.slice(-4000);
    if (d.verb === "BAN") {
      bans.set(d.token, { token: d.token, rule: d.rule, tier: d.tier, value: d.value, from: d.from, until: d.until });
    } else if (d.verb === "UNBAN") {
      bans.delete(d.token);
    }
    if (tokenHistory && tokenHistory.token === d.token) tokenHistory.decisions.push(d);
    renderBans();
    renderLog();
    renderTimeline();
  }
  function applySnapshot(s) {
    skew = s.now - Date.now() / 1000;
    bans.clear();
    for (const b of s.bans) bans.set(b.token, b);
    log = s.log;
    metrics = s.metrics;
    fillBanForm();
    renderBans();
    renderLog();
    renderTimeline();
  }

  // ---- the stream -----------------------------------------------------------------------
  // Server-Sent Events read with fetch (EventSource cannot send a header). Reconnects with
  // backoff after an error or a restart of the service; stops on 401 until a token is given.
  let controller = null;
  let backoff = 1000;
  let retryTimer = null;
  let generation = 0;

  function stopStream() {
    generation++;
    if (controller) controller.abort();
    controller = null;
    clearTimeout(retryTimer);
  }
  function startStream(url, onEvent, headers) {
    stopStream();
    const mine = generation;
    controller = new AbortController();
    setConn("connecting", "connecting…");
    const retry = (why) => {
      if (mine !== generation) return;
      setConn("down", `${why}: retrying in ${Math.round(backoff / 1000)} s`);
      retryTimer = setTimeout(() => startStream(url, onEvent, headers), backoff);
      backoff = Math.min(backoff * 2, 15000);
    };
    fetch(url, { headers: headers(), signal: controller.signal, cache: "no-store" }).then(async (r) => {
      if (mine !== generation) return;
      if (r.status === 401 || r.status === 429) {
        const why = r.status === 401 ? "admin token needed" : "too many failed tokens: wait";
        setConn("denied", why);
        if (r.status === 401) say("Paste the admin token to see the service's data (it stays in this tab only).", "error");
        if (r.status === 429) retry(why);
        return;
      }
      if (!r.ok || !r.body) return retry(`HTTP ${r.status}`);
      setConn("live", "live");
      backoff = 1000;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let name = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length && mine === generation) {
            try { onEvent(name, JSON.parse(data.join("\n"))); }
            catch (e) { say(`A live update could not be read: ${e.message}`, "error"); }
          }
        }
      }
      retry("connection closed");
    }).catch((e) => {
      if (e && e.name === "AbortError") return;
      retry("no connection");
    });
  }

  function serveEvent(name, data) {
    if (name === "snapshot") applySnapshot(data);
    else if (name === "decision") applyDecision(data);
    else if (name === "rates") { skew = data.now - Date.now() / 1000; renderRates(data); }
  }
  function connectServe() {
    startStream("/v1/events", serveEvent, () => authHeaders());
  }

  function setupServe() {
    $("mode-name").textContent = "service";
    $("token-input").value = "";
    $("auth").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("token-input").value.trim();
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      $("token-input").value = "";
      $("message").hidden = true;
      say(t ? "Token kept for this tab." : "No token given.");
      connectServe();
    });
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      say("Token forgotten: admin actions are refused until one is given again.");
    });
    $("ban-search").addEventListener("input", renderBans);
    for (const th of document.querySelectorAll("#ban-table th[data-sort]")) {
      th.addEventListener("click", () => {
        const key = th.dataset.sort;
        sort = { key, dir: sort.key === key && sort.dir === "asc" ? "desc" : "asc" };
        renderBans();
      });
    }
    $("ban-form").addEventListener("submit", doBan);
    $("log-rule").addEventListener("change", renderLog);
    $("log-token").addEventListener("input", renderLog);
    $("log-token").addEventListener("keydown", async (ev) => {
      if (ev.key !== "Enter") return;
      const tok = $("log-token").value.trim();
      if (!tok) { tokenHistory = null; renderLog(); return; }
      const r = await api("GET", `/v1/log?limit=5000&token=${encodeURIComponent(tok)}`);
      if (r.ok) { tokenHistory = { token: tok, decisions: r.data.decisions }; renderLog(); }
      else say(`History of ${tok} ${refusal(r)}`, "error");
    });
    setInterval(tickCountdowns, 1000);
    setInterval(renderTimeline, 30000);
    renderBans();
    connectServe();
  }

  // ---- monitor mode ---------------------------------------------------------------------
  function statsBlock(s, label) {
    return [
      el("div", {}, el("strong", { text: fmtRate(s.requests_per_second) }), `req/s ${label}`),
      el("div", {}, el("strong", { text: String(s.requests) }), `requests ${label}`),
      el("div", {}, el("strong", { text: `${(s.error_rate * 100).toFixed(1)}%` }), `errors ${label}`),
      el("div", {}, el("strong", { text: String(s.unique_clients) }), `clients ${label}`),
    ];
  }
  function renderTraffic(m) {
    skew = m.now - Date.now() / 1000;
    const banner = $("alert-banner");
    if (m.alerting && m.alert) {
      banner.textContent = m.alert.message;
      banner.hidden = false;
    } else {
      banner.hidden = true;
      banner.textContent = "";
    }
    $("traffic-now").textContent = `at ${clock(m.now)} · alert above ${m.threshold}/s over ${m.window} s`;
    lineChart($("rps-chart"), m.per_second, { height: 100, limit: Number(m.threshold) });
    $("traffic-stats").replaceChildren(...statsBlock(m.current, "this interval"), ...statsBlock(m.total, "since start"));
    const shown = m.last_report || { from: m.current_from, to: m.now, interval: m.current };
    $("interval-label").textContent = `${clock(shown.from)}–${clock(shown.to)}`;
    const sections = shown.interval.top_sections;
    const top = Math.max(1, ...sections.map((s) => s[1]));
    $("section-table").tBodies[0].replaceChildren(...sections.map(([name, hits]) => {
      const fill = el("span");
      fill.style.width = `${((hits / top) * 100).toFixed(0)}%`;
      return el("tr", {}, el("td", { class: "mono", text: name }), el("td", { class: "num", text: String(hits) }),
        el("td", {}, el("span", { class: "meter" }, fill)));
    }));
    const classes = shown.interval.status_classes;
    const total = Math.max(1, ...Object.values(classes));
    $("status-bars").replaceChildren(...Object.entries(classes).map(([k, v]) => {
      const fill = el("div", { class: `fill c${k[0]}` });
      fill.style.width = `${((v / total) * 100).toFixed(1)}%`;
      return el("div", { class: "row" }, el("span", { text: k }), el("div", { class: "track" }, fill), el("span", { class: "num", text: String(v) }));
    }));
    $("alert-table").tBodies[0].replaceChildren(...m.alerts.slice().reverse().map((a) => el("tr", {},
      el("td", { text: dateTime(a.at) }),
      el("td", { class: a.type === "alert" ? "verb-ALERT" : "verb-RECOVER", text: a.message }),
      el("td", { class: "num", text: String(a.hits) }))));
    $("alert-empty").hidden = m.alerts.length > 0;
  }
  function setupMonitor() {
    $("mode-name").textContent = "traffic monitor";
    startStream("/ui/feed", (name, data) => { if (name === "state") renderTraffic(data); }, () => ({}));
  }

  // ---- watch mode: bans and decisions from `watch --http`, read only --------------------
  function setupWatch() {
    $("mode-name").textContent = "log watcher";
    $("ban-search").addEventListener("input", renderBans);
    for (const th of document.querySelectorAll("#ban-table th[data-sort]")) {
      th.addEventListener("click", () => {
        const key = th.dataset.sort;
        sort = { key, dir: sort.key === key && sort.dir === "asc" ? "desc" : "asc" };
        renderBans();
      });
    }
    $("log-rule").addEventListener("change", renderLog);
    $("log-token").addEventListener("input", renderLog);
    setInterval(tickCountdowns, 1000);
    setInterval(renderTimeline, 30000);
    startStream("/ui/feed", (name, data) => {
      if (name !== "state") return;
      applySnapshot(data);
      // The rule filter lists the rules the log names (watch sends no metric list).
      const rules = [...new Set(data.log.map((d) => d.rule))].sort();
      const r = $("log-rule"), keep = r.value;
      r.replaceChildren(el("option", { value: "", text: "every rule" }), ...rules.map((x) => el("option", { value: x, text: x })));
      r.value = rules.includes(keep) ? keep : "";
      renderLog();
    }, () => ({}));
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (MODE === "monitor") setupMonitor();
    else if (MODE === "watch") setupWatch();
    else setupServe();
  });
})();
