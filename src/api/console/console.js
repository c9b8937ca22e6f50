// The LLMasOS console: chat (streamed through /v1/chat/completions), the process table
// (/os/processes, with kill and renice), and KV-cache and throughput charts (from /metrics).
// Plain JavaScript, no build step and nothing fetched from elsewhere.
"use strict";

const KEY_STORAGE = "llmasos.key";
const MODEL_STORAGE = "llmasos.model";
const PROCESS_REFRESH_MS = 1000;
const METRICS_REFRESH_MS = 2000;
const CHART_WINDOW_MS = 5 * 60 * 1000;  // the charts show the last five minutes

const $ = (id) => document.getElementById(id);

// --- Requests ------------------------------------------------------------------------------

function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers["Authorization"] = "Bearer " + key;
  return headers;
}

function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = authHeaders(opts.headers);
  return fetch(path, opts);
}

// The message of an error response in either of the daemon's shapes (OpenAI's
// {"error": {"message"}} or Ollama's {"error": "..."}), else its status line.
async function errorText(response) {
  let text = "";
  try { text = await response.text(); } catch (e) { /* the status line below */ }
  try {
    const body = JSON.parse(text);
    if (body && body.error) return typeof body.error === "string" ? body.error : body.error.message;
  } catch (e) { /* not JSON */ }
  return `${response.status} ${response.statusText}` + (text ? `: ${text.slice(0, 200)}` : "");
}

function setStatus(text) { $("status").textContent = text || ""; }

// --- Models --------------------------------------------------------------------------------

async function loadModels() {
  const select = $("model");
  let response;
  try { response = await api("/v1/models"); } catch (e) { setStatus("daemon unreachable: " + e.message); return; }
  if (!response.ok) { setStatus("models: " + await errorText(response)); return; }
  const body = await response.json();
  const ids = (body.data || []).map((m) => m.id).sort();
  select.replaceChildren(...ids.map((id) => new Option(id, id)));
  const saved = sessionStorage.getItem(MODEL_STORAGE);
  if (saved && ids.includes(saved)) select.value = saved;
  if (ids.length === 0) setStatus("no models installed: llmasos pull or llmasos import one");
  else setStatus("");
}

// --- Chat ----------------------------------------------------------------------------------

const conversation = [];  // {role, content}, what the next request sends
let activeStream = null;  // the AbortController of the reply streaming now

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "error" ? "error:" : role + ":";
  const content = document.createElement("span");
  content.className = "content";
  content.textContent = text;
  div.append(who, content);
  $("transcript").append(div);
  $("transcript").scrollTop = $("transcript").scrollHeight;
  return content;
}

// Calls onEvent(parsed JSON) for each `data:` event of an SSE body until [DONE] or its end.
async function readSse(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    await readEvents();
  } catch (e) {
    reader.cancel().catch(() => {});
    throw e;
  }
  async function readEvents() {
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      onEvent(JSON.parse(data));
    }
  }
  }
}

async function sendMessage(text) {
  const model = $("model").value;
  if (!model) { setStatus("pick a model first"); return; }
  sessionStorage.setItem(MODEL_STORAGE, model);
  const maxTokens = Number($("max-tokens").value);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) { setStatus("max tokens must be a whole number from 1"); return; }
  conversation.push({ role: "user", content: text });
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  reply.parentElement.classList.add("streaming");
  activeStream = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  let answer = "";
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model, messages: conversation, stream: true, max_tokens: maxTokens }),
      signal: activeStream.signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    await readSse(response.body, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message || String(chunk.error));
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        answer += delta.content;
        reply.textContent = answer;
        $("transcript").scrollTop = $("transcript").scrollHeight;
      }
    });
    conversation.push({ role: "assistant", content: answer });
  } catch (e) {
    if (e.name !== "AbortError") addMessage("error", e.message);
    if (answer) conversation.push({ role: "assistant", content: answer });
  } finally {
    reply.parentElement.classList.remove("streaming");
    reply.parentElement.classList.add("done");
    activeStream = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

// --- Process table -------------------------------------------------------------------------

const PROCESS_COLUMNS = [
  (p) => p.id,
  (p) => p.version ? `${p.model}@${p.version}` : p.model,
  (p) => p.tenant,
  (p) => p.state,
  null,  // priority: an input and a renice button
  (p) => p.prompt_tokens,
  (p) => p.generated_tokens,
  (p) => p.kv_blocks ? `${p.kv_blocks.resident} + ${p.kv_blocks.swapped}` : "",
  (p) => (p.age_seconds || 0).toFixed(1),
  null,  // the kill button
];

function processAction(id, options, what) {
  return api("/os/processes/" + encodeURIComponent(id), options).then(async (response) => {
    if (!response.ok) setStatus(`${what} ${id}: ` + await errorText(response));
    else setStatus("");
    refreshProcesses();
  }, (e) => setStatus(`${what} ${id}: ` + e.message));
}

function newProcessRow(id) {
  const tr = document.createElement("tr");
  tr.dataset.id = id;
  PROCESS_COLUMNS.forEach(() => tr.append(document.createElement("td")));
  const prio = document.createElement("input");
  prio.type = "number";
  prio.min = "-1000";
  prio.max = "1000";
  prio.className = "priority";
  prio.setAttribute("aria-label", "priority of " + id);
  const renice = document.createElement("button");
  renice.type = "button";
  renice.className = "renice";
  renice.textContent = "renice";
  renice.addEventListener("click", () => {
    const priority = Number(prio.value);
    if (!Number.isInteger(priority)) { setStatus("priority must be a whole number"); return; }
    prio.dataset.editing = "";
    processAction(id, { method: "PATCH", headers: { "Content-Type": "application/json" },
                        body: JSON.stringify({ priority }) }, "renice");
  });
  prio.addEventListener("input", () => { prio.dataset.editing = "1"; });
  tr.children[4].append(prio, " ", renice);
  const kill = document.createElement("button");
  kill.type = "button";
  kill.className = "kill";
  kill.textContent = "kill";
  kill.addEventListener("click", () => processAction(id, { method: "DELETE" }, "kill"));
  tr.children[9].append(kill);
  return tr;
}

function renderProcesses(processes) {
  const tbody = $("processes").tBodies[0];
  const rows = new Map([...tbody.rows].map((tr) => [tr.dataset.id, tr]));
  const live = new Set();
  for (const p of processes) {
    live.add(p.id);
    let tr = rows.get(p.id);
    if (!tr) { tr = newProcessRow(p.id); }
    tbody.append(tr);  // keeps the daemon's order
    PROCESS_COLUMNS.forEach((cell, i) => { if (cell) tr.children[i].textContent = String(cell(p)); });
    tr.dataset.state = p.state;
    const prio = tr.querySelector("input.priority");
    if (!prio.dataset.editing && document.activeElement !== prio) prio.value = p.priority;
  }
  for (const [id, tr] of rows) if (!live.has(id)) tr.remove();
  $("processes-note").textContent = processes.length ? "" : "no live processes";
}

let processesInFlight = false;
async function refreshProcesses() {
  if (processesInFlight) return;
  processesInFlight = true;
  try {
    const response = await api("/os/processes");
    if (response.status === 404) {
      $("processes-note").textContent = "this daemon has no process table (/os/processes)";
    } else if (!response.ok) {
      $("processes-note").textContent = "processes: " + await errorText(response);
    } else {
      renderProcesses((await response.json()).processes || []);
    }
  } catch (e) {
    $("processes-note").textContent = "processes: " + e.message;
  } finally {
    processesInFlight = false;
  }
}

// --- Charts --------------------------------------------------------------------------------

// Prometheus text format: the samples of the families in `names`, as {name: [value, ...]}
// (one value per label set).
function parseMetrics(text, names) {
  const out = {};
  for (const name of names) out[name] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const brace = line.indexOf("{");
    const space = line.lastIndexOf(" ");
    const name = line.slice(0, brace >= 0 && brace < space ? brace : space);
    if (!(name in out)) continue;
    const value = Number(line.slice(space + 1));
    if (Number.isFinite(value)) out[name].push(value);
  }
  return out;
}

const kvSeries = [];   // {t, v}: the most used model's KV cache, percent
const tpsSeries = [];  // {t, v}: generated tokens per second between two scrapes
let lastTokens = null; // {t, total}

function trim(series, now) {
  while (series.length && series[0].t < now - CHART_WINDOW_MS) series.shift();
}

function drawChart(canvas, series, maxHint, color) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 4;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#e4e7ec";
  ctx.lineWidth = 1;
  for (let i = 1; i < 4; i++) {
    const y = Math.round(pad + (h - 2 * pad) * i / 4) + 0.5;
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
  }
  if (series.length === 0) return;
  const now = performance.now();
  const max = Math.max(maxHint, ...series.map((p) => p.v)) || 1;
  ctx.strokeStyle = color;
  ctx.lineWidth = 2;
  ctx.beginPath();
  series.forEach((p, i) => {
    const x = w - (now - p.t) / CHART_WINDOW_MS * w;
    const y = h - pad - (h - 2 * pad) * p.v / max;
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = "#667085";
  ctx.font = "10px system-ui, sans-serif";
  ctx.fillText(max.toFixed(max < 10 ? 1 : 0), 4, 12);
}

async function refreshMetrics() {
  let text;
  try {
    const response = await api("/metrics");
    if (!response.ok) return;
    text = await response.text();
  } catch (e) { return; }
  const now = performance.now();
  // Counted at each engine step (not when a process ends), so the chart follows generation.
  const m = parseMetrics(text, ["vllm:kv_cache_usage_perc", "llmasos_engine_generated_tokens_total"]);
  const kv = m["vllm:kv_cache_usage_perc"].length ? 100 * Math.max(...m["vllm:kv_cache_usage_perc"]) : 0;
  kvSeries.push({ t: now, v: kv });
  const total = m["llmasos_engine_generated_tokens_total"].reduce((a, b) => a + b, 0);
  if (lastTokens) {
    const seconds = (now - lastTokens.t) / 1000;
    const tps = seconds > 0 ? Math.max(0, total - lastTokens.total) / seconds : 0;
    tpsSeries.push({ t: now, v: tps });
    $("tps-now").textContent = `(now ${tps.toFixed(1)})`;
  }
  lastTokens = { t: now, total };
  trim(kvSeries, now);
  trim(tpsSeries, now);
  $("kv-now").textContent = `(now ${kv.toFixed(1)})`;
  drawChart($("kv-chart"), kvSeries, 100, "#2f6fdd");
  drawChart($("tps-chart"), tpsSeries, 1, "#067647");
}

// --- Wiring --------------------------------------------------------------------------------

function init() {
  const key = $("key");
  key.value = sessionStorage.getItem(KEY_STORAGE) || "";
  key.addEventListener("change", () => {
    if (key.value) sessionStorage.setItem(KEY_STORAGE, key.value);
    else sessionStorage.removeItem(KEY_STORAGE);
    loadModels();
    refreshProcesses();
  });
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || activeStream) return;
    $("prompt").value = "";
    sendMessage(text);
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("chat-form").requestSubmit(); }
  });
  $("stop").addEventListener("click", () => { if (activeStream) activeStream.abort(); });
  $("clear").addEventListener("click", () => { conversation.length = 0; $("transcript").replaceChildren(); });
  loadModels();
  refreshProcesses();
  refreshMetrics();
  setInterval(refreshProcesses, PROCESS_REFRESH_MS);
  setInterval(refreshMetrics, METRICS_REFRESH_MS);
}

init();
