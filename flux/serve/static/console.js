"use strict";
// Flux console: the executions of one store and each execution's calls, journal and actions, and
// the store's schedules. One script, no build step; it talks only to this server (/api/v1). Text
// from executions and schedules is always inserted as text (or escaped), never as markup.

const API = "/api/v1";
const app = document.getElementById("app");
const banner = document.getElementById("banner");
const liveDot = document.getElementById("live");

// Statuses the console knows how to show. The store's statuses come first; "sleeping" (running,
// waiting on a timer or a retry) and "diverged" (a replay here parted from the journal) are
// derived. An unknown status from a newer server still shows, in grey, under its own name.
const STATUSES = {
  running: "a process runs it",
  sleeping: "running, waiting on a durable timer or a retry",
  paused: "waits for an input",
  completed: "returned",
  failed: "raised",
  cancelled: "cancelled",
  diverged: "the code no longer replays its journal",
  interrupted: "no process runs it (continue it with resume or flux recover)",
  created: "only its header is written",
  damaged: "its journal is damaged",
};
const FINAL = new Set(["completed", "failed", "cancelled"]);

let cleanup = [];  // what the current page must stop when another one is shown

// -- small helpers -----------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
function esc(text) { return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]); }

function showBanner(message, ok) {
  banner.textContent = message;
  banner.className = ok ? "banner ok" : "banner";
  banner.hidden = false;
}
function hideBanner() { banner.hidden = true; }

function problemText(err) {
  const p = err.problem;
  return p && p.error ? `${p.error}: ${p.detail}` : String(err.message || err);
}

async function api(path, { method = "GET", query, body, raw } = {}) {
  const url = new URL(API + path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (Array.isArray(value)) value.forEach((v) => url.searchParams.append(key, v));
    else if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const init = { method, headers: {} };
  if (body !== undefined || raw !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = raw !== undefined ? raw : JSON.stringify(body);
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!res.ok) {
    const err = new Error(res.statusText);
    err.problem = data;
    err.status = res.status;
    throw err;
  }
  return data;
}

function ms(iso) { return iso ? Date.parse(iso) : NaN; }

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function span(msTotal) {
  if (msTotal === null || msTotal === undefined || Number.isNaN(msTotal)) return "";
  const s = Math.abs(msTotal) / 1000;
  if (s < 1) return `${Math.round(Math.abs(msTotal))} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60), rest = Math.floor(s % 60);
  if (m < 60) return `${m}m ${String(rest).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h}h ${String(m % 60).padStart(2, "0")}m` : `${Math.floor(h / 24)}d ${h % 24}h`;
}

// Elements with data-until (epoch ms) count down; data-since (epoch ms) count up.
function untilText(untilMs) {
  const left = untilMs - Date.now();
  return left > 0 ? `in ${span(left)}` : "due";
}

function tick() {
  const now = Date.now();
  for (const node of document.querySelectorAll("[data-until]")) node.textContent = untilText(Number(node.dataset.until));
  for (const node of document.querySelectorAll("[data-since]")) {
    node.textContent = span(now - Number(node.dataset.since));
  }
}
setInterval(tick, 1000);

function shownStatus(row) {
  if (row.diverged) return "diverged";
  if (row.status === "running" && row.wake_at && row.wake_at * 1000 > Date.now()) return "sleeping";
  return row.status;
}

function chip(status, wakeAt) {
  const known = Object.prototype.hasOwnProperty.call(STATUSES, status);
  const node = el("span", { class: `chip ${known ? "s-" + status : ""}`, title: STATUSES[status] || status, "data-status": status }, status);
  if (wakeAt && wakeAt * 1000 > Date.now() && !FINAL.has(status)) {
    return el("span", {}, node, el("span", { class: "countdown", "data-until": String(wakeAt * 1000) }, untilText(wakeAt * 1000)));
  }
  return node;
}

// A recorded value (SPEC.md 3): tagged objects ({"$datetime": ...}) get a badge, secrets a mark.
function valueNode(value, depth = 0) {
  const pad = "  ".repeat(depth);
  if (value === null || typeof value !== "object") {
    const text = JSON.stringify(value);
    if (typeof value === "string" && /^\[secret:[^\]]+\]$/.test(value)) return el("span", { class: "secret" }, text);
    return document.createTextNode(text === undefined ? "null" : text);
  }
  const keys = Array.isArray(value) ? null : Object.keys(value);
  if (keys && keys.length && keys[0].startsWith("$")) {
    const tag = keys[0].slice(1);
    const rest = Object.assign({}, value);
    const inner = rest[keys[0]];
    delete rest[keys[0]];
    const out = el("span", {}, el("span", { class: "tag" }, tag), valueNode(inner, depth));
    if (Object.keys(rest).length) out.append(" ", valueNode(rest, depth));
    return out;
  }
  const out = el("span");
  const entries = keys ? keys.map((k) => [k, value[k]]) : value.map((v, i) => [i, v]);
  if (!entries.length) { out.append(keys ? "{}" : "[]"); return out; }
  out.append(keys ? "{\n" : "[\n");
  entries.forEach(([k, v], i) => {
    out.append(pad + "  ");
    if (keys) out.append(JSON.stringify(k) + ": ");
    out.append(valueNode(v, depth + 1));
    out.append(i < entries.length - 1 ? ",\n" : "\n");
  });
  out.append(pad + (keys ? "}" : "]"));
  return out;
}

function valueBlock(value) { return el("pre", { class: "value" }, valueNode(value)); }

function short(value, limit = 80) {
  let text = JSON.stringify(value);
  if (text === undefined) text = "null";
  return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
}

function page(render) {
  for (const stop of cleanup) stop();
  cleanup = [];
  hideBanner();
  app.replaceChildren();
  render();
}

// -- the executions list -------------------------------------------------------------------------

const listState = { filters: { status: [], workflow: "", created_after: "", created_before: "", prefix: "" }, rows: [], cursor: null };

function serverStatuses(chosen) {
  // sleeping and diverged are shown from other fields: ask for the statuses they come from
  const out = new Set();
  for (const s of chosen) {
    if (s === "sleeping") out.add("running");
    else if (s !== "diverged") out.add(s);
  }
  return chosen.includes("diverged") ? [] : [...out];
}

function keepRow(row, chosen) {
  return !chosen.length || chosen.includes(shownStatus(row));
}

async function fetchRows(limit, cursor) {
  const f = listState.filters;
  const toIso = (v) => (v ? new Date(v).toISOString() : undefined);
  return api("/executions", {
    query: {
      status: serverStatuses(f.status), workflow: f.workflow, prefix: f.prefix, limit, cursor,
      created_after: toIso(f.created_after), created_before: toIso(f.created_before),
    },
  });
}

function listRow(row) {
  const status = shownStatus(row);
  const started = ms(row.created);
  const duration = FINAL.has(row.status) || row.status === "paused" || row.status === "interrupted"
    ? span(row.duration_ms)
    : null;
  return el("tr", { "data-id": row.execution_id, "data-status": status },
    el("td", {}, chip(status, row.wake_at)),
    el("td", {}, row.workflow),
    el("td", { class: "mono" }, el("a", { href: `#/executions/${row.execution_id}` }, row.execution_id)),
    el("td", {}, when(row.created)),
    el("td", { class: "num" }, duration !== null ? duration : el("span", { "data-since": String(started) }, span(Date.now() - started))),
    el("td", { class: "num" }, row.calls === undefined ? "" : String(row.calls)));
}

function renderRows(tbody, more) {
  const chosen = listState.filters.status;
  const rows = listState.rows.filter((r) => keepRow(r, chosen));
  tbody.replaceChildren(...rows.map(listRow));
  if (!rows.length) tbody.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No executions match.")));
  more.hidden = !listState.cursor;
}

function showList() {
  page(() => {
    const tbody = el("tbody");
    const more = el("button", { onclick: async () => {
      try {
        const next = await fetchRows(50, listState.cursor);
        listState.rows = listState.rows.concat(next.items);
        listState.cursor = next.cursor;
        renderRows(tbody, more);
      } catch (err) { showBanner(problemText(err)); }
    } }, "Load more");
    const refresh = async () => {
      try {
        const got = await fetchRows(Math.min(Math.max(listState.rows.length, 50), 1000));
        listState.rows = got.items;
        listState.cursor = got.cursor;
        renderRows(tbody, more);
        liveDot.classList.add("on");
      } catch (err) {
        liveDot.classList.remove("on");
        showBanner(problemText(err));
      }
    };
    const f = listState.filters;
    const statusBoxes = Object.keys(STATUSES).map((s) => el("label", {},
      el("input", { type: "checkbox", value: s, checked: f.status.includes(s), onchange: (e) => {
        f.status = e.target.checked ? f.status.concat(s) : f.status.filter((x) => x !== s);
        listState.rows = []; refresh();
      } }), s));
    const workflowSelect = el("select", { name: "workflow", onchange: (e) => { f.workflow = e.target.value; listState.rows = []; refresh(); } },
      el("option", { value: "" }, "any workflow"));
    const input = (name, type, placeholder) => el("input", { name, type, placeholder, value: f[name] || "",
      onchange: (e) => { f[name] = e.target.value; listState.rows = []; refresh(); } });
    app.append(
      el("h1", {}, "Executions"),
      el("div", { class: "card" },
        el("div", { class: "filters" },
          el("div", { class: "statuses" }, statusBoxes),
          workflowSelect,
          el("label", {}, "created after", input("created_after", "datetime-local")),
          el("label", {}, "before", input("created_before", "datetime-local")),
          input("prefix", "search", "id prefix"))),
      startForm(),
      el("div", { class: "card" },
        el("table", { id: "executions" },
          el("thead", {}, el("tr", {}, ["status", "workflow", "execution id", "started", "duration", "calls"].map((t) =>
            el("th", { class: t === "duration" || t === "calls" ? "num" : "" }, t)))),
          tbody),
        el("p", {}, more)));
    api("/workflows").then((list) => {
      for (const wf of list) workflowSelect.append(el("option", { value: wf.name, selected: wf.name === f.workflow }, wf.name));
      const starter = document.getElementById("start-workflow");
      if (starter) for (const wf of list) starter.append(el("option", { value: wf.name }, wf.name));
    }).catch((err) => showBanner(problemText(err)));
    refresh();
    const timer = setInterval(refresh, 2000);
    cleanup.push(() => clearInterval(timer));
  });
}

function startForm() {
  const select = el("select", { id: "start-workflow" });
  const input = el("textarea", { id: "start-input", rows: 2, placeholder: "input as JSON (recorded form), e.g. {\"order_id\": \"A-1\"}" });
  const key = el("input", { id: "start-id", placeholder: "execution id (optional)" });
  const go = el("button", { class: "primary", onclick: async () => {
    const text = input.value.trim() || "null";
    try { JSON.parse(text); } catch (err) { showBanner(`the input is not JSON: ${err.message}`); return; }
    try {
      const data = await api(`/workflows/${encodeURIComponent(select.value)}/executions`, { method: "POST", raw: text, query: { execution_id: key.value.trim() } });
      location.hash = `#/executions/${data.execution_id}`;
    } catch (err) { showBanner(problemText(err)); }
  } }, "Start");
  return el("details", { class: "card" }, el("summary", {}, "Start an execution"),
    el("div", { class: "pause-form" }, select, input, key, el("div", {}, go)));
}

// -- one execution ------------------------------------------------------------------------------

function showExecution(id) {
  page(() => {
    const view = { id, data: null, calls: [], failedOnly: false, journal: null };
    const parts = {
      head: el("div", { class: "card", id: "head" }),
      values: el("div", { class: "grid2", id: "values" }),
      pending: el("div", { class: "card pending", id: "pending" }),
      replay: el("div", { class: "card diverge", id: "replay", hidden: true }),
      waterfall: el("div", { class: "card", id: "waterfall-card" }),
      calls: el("div", { class: "card", id: "calls-card" }),
      journal: el("div", { class: "card", id: "journal-card" }),
    };
    app.append(el("p", { class: "small" }, el("a", { href: "#/" }, "← executions")), ...Object.values(parts));
    let stream = null;
    let pendingRefresh = null;
    let closed = false;
    cleanup.push(() => { closed = true; if (stream) stream.close(); clearTimeout(pendingRefresh); });

    const load = async () => {
      try {
        const data = await api(`/executions/${id}`, { query: { calls: true } });
        if (closed) return;
        view.data = data;
        view.calls = data.calls;
        renderHead(view, parts.head, load);
        renderValues(view, parts.values);
        renderPending(view, parts.pending, load);
        renderWaterfall(view, parts.waterfall);
        renderCalls(view, parts.calls);
        if (data.divergence && parts.replay.hidden) renderReplay({ status: "diverged", ...data.divergence }, parts.replay);
        if (!view.journalAsked) {
          view.journalAsked = true;
          setTimeout(() => renderJournal(view, parts.journal), 0);  // after the first paint
        }
        if (!stream && !FINAL.has(data.status)) follow(data.records);
      } catch (err) {
        showBanner(problemText(err));
      }
    };
    const follow = (from) => {
      stream = new EventSource(`${API}/executions/${id}/records/stream?from_seq=${from}`);
      stream.addEventListener("open", () => liveDot.classList.add("on"));
      stream.addEventListener("record", (event) => {
        appendJournalLine(view, Number(event.lastEventId), event.data);
        clearTimeout(pendingRefresh);
        pendingRefresh = setTimeout(load, 250);
      });
      stream.addEventListener("end", () => { stream.close(); liveDot.classList.remove("on"); clearTimeout(pendingRefresh); load(); });
      stream.addEventListener("error", () => liveDot.classList.remove("on"));
    };
    parts.replay.dataset.id = id;
    view.showReplay = (result) => renderReplay(result, parts.replay);
    load();
  });
}

function renderHead(view, node, reload) {
  const d = view.data;
  const status = shownStatus(d.pending && d.status === "running" && firstWake(d) ? { ...d, wake_at: firstWake(d) } : d);
  const link = (execId) => el("a", { class: "mono", href: `#/executions/${execId}` }, execId);
  const children = Object.entries(d.children || {});
  const kv = el("dl", { class: "kv" },
    el("dt", {}, "workflow"), el("dd", {}, d.workflow),
    el("dt", {}, "status"), el("dd", {}, chip(status, firstWake(d))),
    el("dt", {}, "started"), el("dd", {}, when(d.created)),
    el("dt", {}, "last record"), el("dd", {}, `${when(d.updated)} (${span(d.duration_ms)} after the start)`),
    el("dt", {}, "records / calls"), el("dd", {}, `${d.records} / ${d.call_count}`),
    d.owner ? [el("dt", {}, "run by"), el("dd", {}, `pid ${d.owner.pid} on ${d.owner.host}`)] : null,
    d.parent ? [el("dt", {}, "parent"), el("dd", {}, link(d.parent.execution_id), ` (call ${d.parent.call_id})`)] : null,
    d.forked_from ? [el("dt", {}, "forked from"), el("dd", {}, link(d.forked_from.execution_id), ` at seq ${d.forked_from.seq}`)] : null,
    d.schedule ? [el("dt", {}, "schedule"), el("dd", { id: "schedule", "data-schedule": d.schedule.name, "data-trigger": String(!!d.schedule.trigger) },
      el("a", { href: `#/schedules/${d.schedule.name}` }, d.schedule.name),
      d.schedule.trigger ? ` (triggered by hand at ${when(d.schedule.at)})` : ` (its fire of ${when(d.schedule.at)})`)] : null,
    children.length ? [el("dt", {}, "sub-workflows"), el("dd", {}, children.map(([call, child]) => el("div", {}, `call ${call}: `, link(child))))] : null);
  node.replaceChildren(el("h1", { class: "mono" }, d.execution_id), kv, el("div", { class: "actions", style: "margin-top:10px" }, actions(view, reload)));
}

function firstWake(d) {
  const times = [];
  for (const t of (d.pending && d.pending.timers) || []) if (typeof t.wake_at === "number") times.push(t.wake_at);
  for (const r of (d.pending && d.pending.retries) || []) if (typeof r.retry_at === "number") times.push(r.retry_at);
  for (const w of d.waiting || []) if (w.wake_at) times.push(ms(w.wake_at) / 1000);
  return times.length ? Math.min(...times) : null;
}

function actions(view, reload) {
  const d = view.data;
  const id = d.execution_id;
  const out = [];
  if (!FINAL.has(d.status)) {
    const cancel = el("button", { class: "danger", id: "cancel", onclick: async () => {
      if (!cancel.classList.contains("armed")) { cancel.classList.add("armed"); cancel.textContent = "Confirm cancel"; return; }
      cancel.disabled = true;
      try {
        const data = await api(`/executions/${id}/cancel`, { method: "POST", query: { wait: 10 } });
        showBanner(`execution ${id} is ${data.status}`, true);
      } catch (err) { showBanner(problemText(err)); }
      reload();
    } }, "Cancel");
    out.push(cancel);
  }
  out.push(el("button", { id: "replay-button", onclick: async () => {
    try {
      const result = await api(`/executions/${id}/replay`, { method: "POST" });
      view.showReplay(result);
      reload();
    } catch (err) { showBanner(problemText(err)); }
  } }, "Replay against current code"));
  const at = el("input", { id: "fork-at", type: "number", min: 1, max: d.records, value: d.records, style: "width:6em" });
  const setSeq = el("input", { id: "fork-set-seq", type: "number", min: 1, placeholder: "seq", style: "width:5em" });
  const setValue = el("input", { id: "fork-set-value", placeholder: "new result (JSON)", style: "width:12em" });
  out.push(el("span", { class: "group" }, "Fork at seq", at,
    el("span", { class: "small muted" }, "result"), setSeq, setValue,
    el("button", { id: "fork", onclick: async () => {
      const body = { at: Number(at.value), run: true };
      if (setSeq.value) {
        try { body.set_result = { seq: Number(setSeq.value), value: JSON.parse(setValue.value || "null") }; } catch (err) { showBanner(`the result is not JSON: ${err.message}`); return; }
      }
      try {
        const data = await api(`/executions/${id}/fork`, { method: "POST", body, query: { wait: 5 } });
        location.hash = `#/executions/${data.execution_id}`;
      } catch (err) { showBanner(problemText(err)); }
    } }, "Fork")));
  out.push(el("span", { class: "group" }, el("a", { id: "download", href: `${API}/executions/${id}/records?download=1`, download: `${id}.jsonl` }, "Download journal")));
  return out;
}

function renderValues(view, node) {
  const d = view.data;
  const output = d.status === "failed" && d.error
    ? el("div", { class: "card", id: "error" }, el("h2", {}, "Error"),
      el("div", { class: "error-title" }, `${d.error.type}: ${d.error.message}`),
      d.error.traceback ? el("pre", { class: "traceback" }, d.error.traceback) : null)
    : el("div", { class: "card", id: "output" }, el("h2", {}, "Output"),
      d.status === "completed" ? valueBlock(d.output) : el("p", { class: "muted" }, `none yet (${d.status})`));
  node.replaceChildren(el("div", { class: "card", id: "input" }, el("h2", {}, "Input"), valueBlock(d.input)), output);
}

function renderPending(view, node, reload) {
  const d = view.data;
  const p = d.pending || { running: [], timers: [], retries: [] };
  const items = [];
  const live = d.status === "running";
  for (const r of p.running) {
    items.push(el("li", {}, live ? "running " : "started, to run again when continued: ",
      el("b", {}, r.name), el("span", { class: "muted mono" }, ` call ${r.call_id}`), r.attempts > 1 ? ` (attempt ${r.attempts})` : "",
      live ? [" for ", el("span", { "data-since": String(ms(r.started_at)) }, span(Date.now() - ms(r.started_at)))] : null));
  }
  for (const t of p.timers) {
    items.push(el("li", {}, "timer ", el("b", {}, t.name), el("span", { class: "muted mono" }, ` call ${t.call_id}`),
      " wakes ", el("span", { "data-until": String(t.wake_at * 1000) }, untilText(t.wake_at * 1000)), ` (${when(new Date(t.wake_at * 1000).toISOString())})`));
  }
  for (const r of p.retries) {
    items.push(el("li", {}, "retry of ", el("b", {}, r.name), el("span", { class: "muted mono" }, ` call ${r.call_id}`),
      " ", el("span", { "data-until": String(r.retry_at * 1000) }, untilText(r.retry_at * 1000))));
  }
  for (const w of d.waiting || []) items.push(pauseItem(d, w, reload));
  node.replaceChildren(el("h2", {}, "Pending now"), items.length ? el("ul", {}, items) : el("p", { class: "muted" }, "nothing"));
  tick();
}

function pauseItem(d, w, reload) {
  const text = el("textarea", { class: "resume-input", rows: 3, "aria-label": `input for pause ${w.name}` }, "{}");
  const button = el("button", { class: "primary resume", onclick: async () => {
    const raw = text.value.trim() || "null";
    try { JSON.parse(raw); } catch (err) { showBanner(`the input is not JSON: ${err.message}`); return; }
    button.disabled = true;
    try {
      // The input goes as typed (recorded form), not re-serialized: nothing is rounded.
      await api(`/executions/${d.execution_id}/resume`, { method: "POST", raw: `{"pause":${JSON.stringify(w.call_id)},"input":${raw}}` });
      showBanner(`resumed pause ${w.name}`, true);
    } catch (err) { showBanner(problemText(err)); button.disabled = false; }
    reload();
  } }, "Resume");
  return el("li", { class: "pause", "data-call": w.call_id }, "pause ", el("b", {}, w.name),
    el("span", { class: "muted mono" }, ` call ${w.call_id}`),
    w.execution_id !== d.execution_id ? [" in ", el("a", { class: "mono", href: `#/executions/${w.execution_id}` }, w.execution_id)] : null,
    w.wake_at ? [" (continues without input ", el("span", { "data-until": String(ms(w.wake_at)) }, untilText(ms(w.wake_at))), ")"] : null,
    el("div", { class: "pause-form" }, text, el("div", {}, button)));
}

// The waterfall: one row (and one bar) per call, keyed by call id, indented by branch depth.
// The end of a call's bar; null for a pause that waits with no deadline (drawn to the right edge,
// so that waiting a day does not squeeze everything else into a corner).
function callEnd(row, data, now) {
  if (row.ended_at) return ms(row.ended_at);
  if (row.kind === "timer" && row.wake_at) return row.wake_at * 1000;
  if (row.kind === "pause") return row.wake_at ? Math.max(row.wake_at * 1000, now) : null;
  return data.status === "running" ? now : ms(data.updated);
}

function barSegments(row, data, now) {
  if (row.segments) {
    return row.segments.map((s) => ({ kind: s.kind, outcome: s.outcome || "", start: ms(s.start), end: s.end ? ms(s.end) : now }));
  }
  const kind = row.kind === "timer" ? "timer" : row.kind === "pause" ? "pause" : "call";
  return [{ kind, outcome: row.outcome, start: ms(row.started_at), end: callEnd(row, data, now) }];
}

function isFailed(row) {
  return row.outcome === "failed" || (row.segments || []).some((s) => s.outcome === "failed") ||
    (row.notes || []).some((n) => n.endsWith("_failed"));
}

// Only the rows in sight are in the page (a 10,000-call waterfall scrolls like a short one).
const ROW_HEIGHT = 20;
const OVERSCAN = 20;

function renderWaterfall(view, node) {
  const d = view.data;
  const now = Date.now();
  const rows = view.failedOnly ? view.calls.filter(isFailed) : view.calls;
  const t0 = ms(d.created);
  let t1 = Math.max(ms(d.updated), t0 + 1);
  const bars = rows.map((row) => {
    const segments = barSegments(row, d, now);
    for (const s of segments) if (s.end !== null && s.end > t1) t1 = s.end;
    return segments;
  });
  if (bars.some((segments) => segments.some((s) => s.end === null))) t1 += (t1 - t0) * 0.12;  // room to show it waits
  for (const segments of bars) for (const s of segments) if (s.end === null) s.end = t1;
  const scale = 100 / (t1 - t0);
  const rowHtml = (i) => {
    const row = rows[i];
    const depth = row.call_id.split(".").length - 1;
    const segs = bars[i].map((s) => {
      const left = Math.max(0, (s.start - t0) * scale);
      const width = Math.max(0, (s.end - s.start) * scale);
      const title = `${s.kind} ${s.outcome} ${span(s.end - s.start)}`;
      return `<i class="seg k-${esc(s.kind)} o-${esc(s.outcome)}" style="left:${left.toFixed(3)}%;width:${width.toFixed(3)}%" title="${esc(title)}"></i>`;
    }).join("");
    const label = `<span class="cid">${esc(row.call_id)}</span>${row.kind !== "task" ? `<i>${esc(row.kind)}</i> ` : ""}${esc(row.name)}`;
    return `<div class="wf-row" style="top:${i * ROW_HEIGHT}px" data-call="${esc(row.call_id)}" data-outcome="${esc(row.outcome)}"><div class="wf-label" style="padding-left:${depth * 12}px" title="${esc(row.call_id + " " + row.name)}">${label}</div><div class="bar">${segs}</div></div>`;
  };
  const box = el("div", { class: "waterfall", id: "waterfall", "data-rows": String(rows.length) });
  const space = el("div", { class: "wf-space", style: `height:${rows.length * ROW_HEIGHT}px` });
  box.append(space);
  let drawn = "";
  const draw = () => {
    const first = Math.max(0, Math.floor(box.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((box.scrollTop + (box.clientHeight || 640)) / ROW_HEIGHT) + OVERSCAN);
    if (drawn === `${first}:${last}`) return;
    drawn = `${first}:${last}`;
    const html = [];
    for (let i = first; i < last; i++) html.push(rowHtml(i));
    space.innerHTML = html.join("");
  };
  let pending = false;
  box.addEventListener("scroll", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  });
  const filter = el("label", {}, el("input", { type: "checkbox", id: "failed-only", checked: view.failedOnly, onchange: (e) => {
    view.failedOnly = e.target.checked;
    renderWaterfall(view, node);
  } }), " failed only");
  const legend = el("span", { class: "legend" },
    [["completed", "var(--completed)"], ["failed", "var(--failed)"], ["running", "var(--running)"], ["timer / retry wait", "#c4b5fd"], ["pause", "#f59e0b"], ["fallback", "#0891b2"], ["rollback", "#a16207"]]
      .map(([name, color]) => el("span", {}, el("i", { style: `background:${color}` }), name)));
  const keep = node.querySelector("#waterfall");
  const scrollTop = keep ? keep.scrollTop : 0;
  node.replaceChildren(el("div", { class: "wf-head" }, el("h2", { style: "margin:0" }, `Calls over time (${span(t1 - t0)})`), filter, legend), box);
  box.scrollTop = scrollTop;
  draw();
}

const CALL_PAGE = 200;
function renderCalls(view, node, shown = CALL_PAGE) {
  const rows = view.calls.slice(0, shown);
  const body = rows.map((r) => el("tr", { "data-call": r.call_id },
    el("td", { class: "num" }, r.end_seq !== null && r.end_seq !== undefined && r.end_seq !== r.seq ? `${r.seq}-${r.end_seq}` : String(r.seq)),
    el("td", { class: "mono" }, r.call_id),
    el("td", {}, r.kind === "task" ? "" : r.kind + " ", el("b", {}, r.name),
      r.kind === "task" || r.kind === "child" ? `(${[...(r.args || []).map((a) => short(a, 40)), ...Object.entries(r.kwargs || {}).map(([k, v]) => `${k}=${short(v, 40)}`)].join(", ")})` : ""),
    el("td", {}, r.outcome),
    el("td", { class: "mono small" }, r.error ? `${r.error.type}: ${r.error.message}` : "value" in r ? short(r.value) : ""),
    el("td", { class: "num" }, String(r.attempts)),
    el("td", { class: "num" }, r.duration_ms === null ? "" : span(r.duration_ms)),
    el("td", { class: "mono small" }, r.child ? el("a", { href: `#/executions/${r.child}` }, r.child) : r.src)));
  const more = view.calls.length > shown
    ? el("button", { onclick: () => renderCalls(view, node, view.calls.length) }, `Show all ${view.calls.length} calls`)
    : null;
  node.replaceChildren(el("h2", {}, `Calls (${view.calls.length})`),
    el("table", { id: "calls" }, el("thead", {}, el("tr", {}, ["seq", "call id", "call", "outcome", "value or error", "attempts", "duration", "source"].map((t) => el("th", {}, t)))),
      el("tbody", {}, body)), ...(more ? [more] : []));
}

// The raw journal: its lines as stored, a page at a time; new lines come from the stream.
const JOURNAL_PAGE = 300;
function renderJournal(view, node) {
  const box = el("div", { class: "journal", id: "journal" });
  const count = el("span", { class: "small muted", id: "journal-count" }, "");
  const more = el("button", { hidden: true, id: "journal-more" }, "Show more");
  node.replaceChildren(el("h2", {}, "Journal ", count), box, more);
  const journal = view.journal = { box, count, more, shown: 0, total: view.data.records, loading: false, early: [] };
  const status = () => {
    count.textContent = `${journal.total} records${journal.shown < journal.total ? `, first ${journal.shown} shown` : ""}`;
    more.hidden = journal.shown >= journal.total;
  };
  const page = async () => {
    journal.loading = true;
    try {
      const res = await fetch(`${API}/executions/${view.id}/records?from_seq=${journal.shown}&limit=${JOURNAL_PAGE}`);
      const text = await res.text();
      if (!res.ok) throw Object.assign(new Error(res.statusText), { problem: JSON.parse(text) });
      journal.total = Math.max(journal.total, Number(res.headers.get("X-Flux-Records")));
      for (const line of text.split("\n")) if (line) box.append(journalLine(journal.shown++, line));
    } catch (err) {
      showBanner(problemText(err));
    }
    journal.loading = false;
    for (const [seq, line] of journal.early.splice(0)) appendJournalLine(view, seq, line);
    status();
  };
  more.onclick = page;
  page();
}

function journalLine(seq, line) {
  return el("span", { class: "ln", "data-seq": String(seq) }, el("span", { class: "seq" }, String(seq)), line);
}

function appendJournalLine(view, seq, line) {
  const journal = view.journal;
  if (!journal) return;
  if (journal.loading) { journal.early.push([seq, line]); return; }
  journal.total = Math.max(journal.total, seq + 1);
  if (seq === journal.shown && journal.shown === journal.total - 1) {
    journal.box.append(journalLine(seq, line));
    journal.shown += 1;
  }
  journal.count.textContent = `${journal.total} records${journal.shown < journal.total ? `, first ${journal.shown} shown` : ""}`;
  journal.more.hidden = journal.shown >= journal.total;
}

// Replay against the code the server loaded; a divergence is shown journal beside code.
function renderReplay(result, node) {
  node.hidden = false;
  if (result.status !== "diverged") {
    const verdict = result.matches ? "the code replays the journal" : `the code ends another way: ${result.note}`;
    node.replaceChildren(el("h2", {}, "Replay against current code"),
      el("p", { id: "replay-verdict", "data-matches": String(result.matches) }, verdict),
      el("p", { class: "small muted" }, `${result.replayed} records, ${result.call_count} calls, ${span(result.seconds * 1000)}; status ${result.status}`));
    return;
  }
  const rec = result.recorded || {};
  const cur = result.current || {};
  const differs = new Set((result.arg_diff || []).map((a) => a.where));
  const argCells = (side) => {
    const args = side.args || [];
    const kwargs = side.kwargs || {};
    return [...args.map((a, i) => el("div", { class: differs.has(`args[${i}]`) ? "differs" : "" }, `args[${i}] = ${short(a, 120)}`)),
      ...Object.entries(kwargs).map(([k, v]) => el("div", { class: differs.has(`${k}=`) ? "differs" : "" }, `${k}=${short(v, 120)}`))];
  };
  const line = (name, a, b) => el("tr", {}, el("th", {}, name), el("td", {}, a), el("td", {}, b));
  node.replaceChildren(el("h2", {}, "Replay against current code: diverged"),
    el("p", { id: "replay-verdict", "data-matches": "false" }, `first record where they part: seq ${result.seq} (${result.path}:${result.line})`),
    el("table", { id: "divergence" },
      el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "journal"), el("th", {}, "code now"))),
      el("tbody", {},
        line("call id", result.call_id, result.call_id),
        line("kind", rec.kind || "", cur.kind || ""),
        line("name", rec.name || "(nothing)", cur.name || "(nothing)"),
        line("arguments", argCells(rec), argCells(cur)),
        line("source", rec.src || "", cur.src || ""))),
    el("pre", { class: "traceback", style: "margin-top:8px" }, result.message || ""));
}

// -- schedules ----------------------------------------------------------------------------------

// Said the way `flux schedule create --interval` takes it: 90 s is "90s", 7200 s "2h".
function every(seconds) {
  for (const [unit, size] of [["w", 604800], ["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

function epochWhen(seconds) { return when(new Date(seconds * 1000).toISOString()); }

function scheduleWhen(spec) {
  if (spec.type === "cron") return [el("span", { class: "muted" }, "cron "), el("code", {}, spec.expression)];
  if (spec.type === "interval") {
    return [el("span", { class: "muted" }, "every "), every(spec.seconds),
      spec.end ? el("span", { class: "small muted" }, ` until ${epochWhen(spec.end)}`) : null];
  }
  if (spec.type === "once") return [el("span", { class: "muted" }, "once at "), epochWhen(spec.at)];
  return spec.type;
}

function schedulePolicies(s) {
  const missed = s.missed === "all" ? `all (at most ${s.missed_limit})` : s.missed;
  return el("div", { class: "small" }, el("div", {}, `overlap ${s.overlap}`), el("div", {}, `missed ${missed}`), el("div", {}, `grace ${s.grace}s`));
}

function nextFires(s) {
  if (s.paused) return el("span", { class: "muted" }, "none while paused");
  if (!s.next_fires.length) return el("span", { class: "muted" }, "none: it fires no more");
  const [first, ...rest] = s.next_fires;
  return el("ol", { class: "fires" },
    el("li", { class: "next", "data-at": String(first) }, epochWhen(first),
      el("span", { class: "countdown", "data-until": String(first * 1000) }, untilText(first * 1000))),
    rest.map((at) => el("li", { "data-at": String(at) }, epochWhen(at))));
}

const scheduleState = { armed: new Set(), busy: new Set() };

function scheduleRow(s, refresh) {
  const name = s.name;
  const act = async (call) => {
    scheduleState.busy.add(name);
    render();
    try { await call(); } catch (err) { showBanner(problemText(err)); }
    scheduleState.busy.delete(name);
    await refresh();
  };
  const busy = scheduleState.busy.has(name);
  const toggle = el("button", { class: "toggle", disabled: busy, onclick: () => act(async () => {
    const data = await api(`/schedules/${encodeURIComponent(name)}/${s.paused ? "resume" : "pause"}`, { method: "POST" });
    showBanner(`schedule ${data.name} is ${data.paused ? "paused" : "active"}`, true);
  }) }, s.paused ? "Resume" : "Pause");
  const trigger = el("button", { class: "primary trigger", disabled: busy, onclick: () => act(async () => {
    const data = await api(`/schedules/${encodeURIComponent(name)}/trigger`, { method: "POST" });
    showTriggered(name, data.execution_id);
  }) }, "Trigger now");
  const armed = scheduleState.armed.has(name);
  const remove = el("button", { class: `danger delete${armed ? " armed" : ""}`, disabled: busy, onclick: () => {
    if (!scheduleState.armed.has(name)) { scheduleState.armed.add(name); render(); return; }
    scheduleState.armed.delete(name);
    act(async () => {
      await api(`/schedules/${encodeURIComponent(name)}`, { method: "DELETE" });
      showBanner(`deleted schedule ${name} (the executions it started stay)`, true);
    });
  } }, armed ? "Confirm delete" : "Delete");
  const last = s.last_execution
    ? el("div", {}, el("a", { class: "mono last-execution", href: `#/executions/${s.last_execution}` }, s.last_execution),
      el("div", {}, s.last_execution_status ? chip(s.last_execution_status) : el("span", { class: "muted small" }, "gone")))
    : el("span", { class: "muted" }, "none");
  return el("tr", { "data-name": name, "data-paused": String(!!s.paused), id: `schedule-${name}` },
    el("td", { class: "mono name" }, name, s.auto ? el("span", { class: "tag auto", title: "declared by the workflow's schedule= option" }, "auto") : null),
    el("td", {}, s.workflow),
    el("td", { class: "when" }, scheduleWhen(s.spec)),
    el("td", {}, s.spec.timezone || el("span", { class: "muted", title: "its times are instants: no time zone applies" }, "-")),
    el("td", { class: "policies" }, schedulePolicies(s)),
    el("td", {}, el("span", { class: `chip ${s.paused ? "s-paused" : "s-active"}`, "data-status": s.paused ? "paused" : "active" }, s.paused ? "paused" : "active"),
      s.buffered ? el("div", { class: "small muted" }, `a fire of ${epochWhen(s.buffered)} waits`) : null),
    el("td", { class: "next-fires" }, nextFires(s)),
    el("td", {}, last, el("div", { class: "small muted" }, `fired ${s.fires} ${s.fires === 1 ? "time" : "times"} on schedule`)),
    el("td", {}, el("div", { class: "actions" }, toggle, trigger, remove)));

  function render() {
    const row = document.getElementById(`schedule-${name}`);
    if (row) row.replaceWith(scheduleRow(s, refresh));
  }
}

function showTriggered(name, executionId) {
  const note = document.getElementById("triggered");
  if (!note) return;
  note.replaceChildren(`Schedule ${name} started `,
    el("a", { class: "mono", href: `#/executions/${executionId}`, "data-id": executionId }, executionId), ".");
  note.hidden = false;
}

function scheduleForm(refresh) {
  const field = (id, attrs) => el("input", { id, ...attrs });
  const name = field("new-schedule-name", { placeholder: "name (letters, digits, - and _)" });
  const workflow = field("new-schedule-workflow", { placeholder: "workflow", list: "served-workflows" });
  const kind = el("select", { id: "new-schedule-kind" }, ["cron", "interval", "at"].map((k) => el("option", { value: k }, k)));
  const when_ = field("new-schedule-when", { placeholder: "0 9 * * MON-FRI, 15m or 2026-12-24T18:00" });
  const zone = field("new-schedule-timezone", { value: "UTC", placeholder: "timezone" });
  const overlap = el("select", { id: "new-schedule-overlap" }, ["skip", "allow", "buffer_one"].map((k) => el("option", { value: k }, `overlap ${k}`)));
  const missed = el("select", { id: "new-schedule-missed" }, ["latest", "skip", "all"].map((k) => el("option", { value: k }, `missed ${k}`)));
  const input = el("textarea", { id: "new-schedule-input", rows: 2, placeholder: "input as JSON (recorded form), optional" });
  const paused = el("input", { id: "new-schedule-paused", type: "checkbox" });
  const go = el("button", { class: "primary", id: "new-schedule-create", onclick: async () => {
    const raw = input.value.trim();
    if (raw) { try { JSON.parse(raw); } catch (err) { showBanner(`the input is not JSON: ${err.message}`); return; } }
    // The input goes as typed (recorded form), not re-serialized: nothing is rounded.
    const body = JSON.stringify({ name: name.value.trim(), workflow: workflow.value.trim(), [kind.value]: when_.value.trim(),
      timezone: zone.value.trim() || "UTC", overlap: overlap.value, missed: missed.value, paused: paused.checked });
    try {
      const data = await api("/schedules", { method: "POST", raw: raw ? `${body.slice(0, -1)},"input":${raw}}` : body });
      showBanner(`created schedule ${data.name}`, true);
      await refresh();
    } catch (err) { showBanner(problemText(err)); }
  } }, "Create");
  return el("details", { class: "card" }, el("summary", {}, "Create a schedule"),
    el("div", { class: "pause-form" }, el("div", { class: "filters" }, name, workflow), el("div", { class: "filters" }, kind, when_, zone),
      el("div", { class: "filters" }, overlap, missed, el("label", {}, paused, "paused")), input, el("div", {}, go)),
    el("datalist", { id: "served-workflows" }));
}

function showSchedules(focus) {
  page(() => {
    const tbody = el("tbody");
    let closed = false;
    const refresh = async () => {
      try {
        const got = await api("/schedules");
        if (closed) return;
        const names = new Set(got.items.map((s) => s.name));
        for (const name of [...scheduleState.armed]) if (!names.has(name)) scheduleState.armed.delete(name);
        tbody.replaceChildren(...got.items.map((s) => scheduleRow(s, refresh)));
        if (!got.items.length) {
          tbody.append(el("tr", {}, el("td", { colspan: 9, class: "muted" },
            "No schedules. Create one here, with flux schedule create, or with a workflow's schedule= option (stored when a worker loads it).")));
        }
        if (focus) {
          const row = document.getElementById(`schedule-${focus}`);
          if (row) { row.classList.add("focus"); row.scrollIntoView({ block: "nearest" }); }
        }
        liveDot.classList.add("on");
      } catch (err) {
        liveDot.classList.remove("on");
        showBanner(problemText(err));
      }
    };
    app.append(
      el("h1", {}, "Schedules"),
      el("p", { class: "small muted" }, "A flux worker that loads a schedule's workflow fires it at its times. Trigger now starts one execution at once, run by this server."),
      el("div", { class: "banner ok notice", id: "triggered", hidden: true }),
      scheduleForm(refresh),
      el("div", { class: "card" },
        el("table", { id: "schedules" },
          el("thead", {}, el("tr", {}, ["name", "workflow", "when", "timezone", "policies", "status", "next fires", "last execution", ""].map((t) => el("th", {}, t)))),
          tbody)));
    api("/workflows").then((list) => {
      const options = document.getElementById("served-workflows");
      if (options) for (const wf of list) options.append(el("option", { value: wf.name }));
    }).catch((err) => showBanner(problemText(err)));
    refresh();
    const timer = setInterval(refresh, 5000);
    cleanup.push(() => { closed = true; clearInterval(timer); });
  });
}

function route() {
  const match = location.hash.match(/^#\/executions\/([A-Za-z0-9][A-Za-z0-9_-]{0,63})$/);
  const schedules = location.hash.match(/^#\/schedules(?:\/([A-Za-z0-9][A-Za-z0-9_-]{0,39}))?$/);
  if (match) showExecution(match[1]);
  else if (schedules) showSchedules(schedules[1]);
  else showList();
}

window.addEventListener("hashchange", route);
route();
