// The workstate playground: a client of the Work API, its test routes and the playground's explain route.
// Nothing about the wire is written here: the base path, the worker header's name, the ids' prefixes, the test
// routes and the test clock's header come from GET /_playground/config (read from workstate.api.routes and the
// Dialect values on the server), one entry per dialect served. The dialect switch chooses which one the controls
// speak; each dialect has its own server, so its own environment, items and tokens (kept while another is shown).

const $ = (selector) => document.querySelector(selector);
const AUTH = "Bearer playground";

const state = {
  config: null,
  dialect: null, // one entry of config.dialects: {name, base_path, work_path, worker_header, test_routes, ...}
  sessions: new Map(), // dialect name -> {env, items, tokens, selected} of the dialects not shown now
  now: 0, // the test clock, in milliseconds since the epoch (one clock for every dialect)
  env: null,
  items: new Map(), // id -> {id, state, worker, deadline, version, metadata}
  tokens: new Map(), // `${worker} ${item}` -> the last last_heartbeat that worker saw for that item
  selected: null,
  exchanges: 0,
};

// --- time ---------------------------------------------------------------------------------------------------

function stamp(ms) {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z"); // RFC 3339 with microseconds
}

function shortTime(text) {
  return text ? text.replace(/^\d{4}-\d\d-\d\dT/, "").replace(/\.000000Z$|Z$/, "Z") : "-";
}

function showNow() {
  $("#now").textContent = stamp(state.now);
}

// --- talking to the server ----------------------------------------------------------------------------------

function origin() {
  return state.dialect.origin || "";
}

function workPath(env, work, operation) {
  let path = state.dialect.work_path.replace("{env}", encodeURIComponent(env));
  if (work) path += "/" + encodeURIComponent(work);
  if (operation) path += "/" + operation;
  return path;
}

function clockHeaders() {
  return state.config.test_clock ? { [state.config.now_header]: stamp(state.now) } : {};
}

async function readJson(response) {
  const text = await response.text();
  try {
    return { text, json: text ? JSON.parse(text) : null };
  } catch {
    return { text, json: null };
  }
}

async function explainRequest(method, target, headers, body) {
  const response = await fetch(origin() + state.config.explain, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...clockHeaders() },
    body: JSON.stringify({ method, target, headers, body: body ?? null, dialect: state.dialect.name }),
  });
  const { json } = await readJson(response);
  return response.ok ? json : { rule: null, summary: `explain answered ${response.status}: ${json?.error?.message}` };
}

// One exchange with the Work API: explained first (what the core decides for it, now), then sent, then logged.
// `worker` is the worker header sent (null: none); `as` the worker acting, when it sends no header.
async function send(method, target, { worker = null, as = null, body = null, quiet = false } = {}) {
  const headers = { Authorization: AUTH, ...clockHeaders() };
  if (worker !== null) headers[state.dialect.worker_header] = worker;
  if (body !== null) headers["Content-Type"] = "application/json";
  const why = quiet ? null : await explainRequest(method, target, headers, body);
  const response = await fetch(origin() + target, { method, headers, body: body ?? undefined });
  const { text, json } = await readJson(response);
  const who = worker ?? as;
  if (!quiet) logExchange({ method, target, worker: who, sent: worker !== null, body, status: response.status, text, json, why });
  return { status: response.status, json };
}

async function testRoute(path, value) {
  const target = state.dialect.test_routes + path;
  const response = await fetch(origin() + target, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...clockHeaders() },
    body: JSON.stringify(value),
  });
  const { text, json } = await readJson(response);
  const why = { rule: null, summary: "a test route: the platform's side, outside the Work API (no lifecycle rule)" };
  logExchange({ method: "POST", target, worker: null, body: JSON.stringify(value), status: response.status, text, json, why });
  return { status: response.status, json };
}

// --- the log ------------------------------------------------------------------------------------------------

function ruleLine(why) {
  if (!why) return "";
  const rule = (r) => `[${r.section} ${r.name}] ${r.text.replace(/^\[[^\]]*\] /, "")}`;
  const first = why.lapse ? `first ${rule(why.lapse)}; then ` : "";
  if (!why.rule) return why.summary;
  const guards = (why.guards || []).map((g) => `${g.guard}=${g.value ? "yes" : "no"}`).join(", ");
  return first + rule(why.rule) + (guards ? `  {${guards}}` : "");
}

function entry(kind, head, ruleText, extra) {
  const li = document.createElement("li");
  li.className = kind;
  const top = document.createElement("div");
  top.className = "head";
  top.append(...head);
  li.append(top);
  if (ruleText) {
    const line = document.createElement("div");
    line.className = "rule";
    line.textContent = ruleText;
    li.append(line);
  }
  for (const node of extra) li.append(node);
  $("#log").prepend(li);
  return li;
}

function logExchange({ method, target, worker, sent = true, body, status, text, json, why }) {
  state.exchanges += 1;
  const code = document.createElement("span");
  code.className = "status";
  code.textContent = String(status);
  const head = [
    `#${state.exchanges} ${shortTime(stamp(state.now))} `,
    worker === null ? "" : `${worker}: `,
    `${method} ${target}${body ? " " + body : ""} → `,
    code,
  ];
  const extra = [];
  if (worker !== null && !sent) {
    const note = document.createElement("div");
    note.className = "note";
    note.textContent = `(no ${state.dialect.worker_header} header sent: the ${state.dialect.name} ack does not check the worker)`;
    extra.push(note);
  }
  if (why && why.status != null && why.status !== status) {
    const note = document.createElement("div");
    note.className = "note";
    note.textContent = `(the explanation expected ${why.status}: something else answered first, e.g. the route or the token)`;
    extra.push(note);
  }
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "body";
  const pre = document.createElement("pre");
  pre.textContent = json === null ? text || "(no body)" : JSON.stringify(json, null, 2);
  details.append(summary, pre);
  if (status >= 400 || !text || json?.lease_extended === false) details.open = true;
  extra.push(details);
  entry(status < 400 ? "ok" : "error", head, ruleLine(why), extra);
}

function logClock(text, lapses) {
  const lines = lapses.map((l) => {
    const div = document.createElement("div");
    div.className = "rule";
    div.textContent = `${l.id}: ${ruleLine(l.why)}`;
    return div;
  });
  entry("clock", [text], lapses.length ? "" : "no item lapses", lines);
}

// --- items, table and diagram -------------------------------------------------------------------------------

function remember(json) {
  if (!json || typeof json !== "object" || !json.id || !String(json.id).startsWith(state.dialect.work_prefix)) return;
  const known = state.items.get(json.id) || { id: json.id };
  known.state = json.state;
  known.metadata = json.metadata;
  state.items.set(json.id, known);
  if (!state.selected) state.selected = json.id;
}

// Read every item back: its state through the Work API (GET), and what the wire does not show (bound worker,
// deadline, version) through the explain route.
async function refresh() {
  for (const item of state.items.values()) {
    if (!state.env) break;
    const target = workPath(state.env, item.id);
    const { status, json } = await send("GET", target, { quiet: true });
    if (status === 200) remember(json);
    const why = await explainRequest("GET", target, { Authorization: AUTH }, null);
    if (why && why.item) {
      item.worker = why.item.worker_id;
      item.deadline = why.item.deadline;
      item.version = why.item.version;
    }
  }
  render();
}

function render() {
  const select = $("#item");
  const chosen = state.selected;
  select.replaceChildren(
    ...[...state.items.keys()].map((id) => {
      const option = document.createElement("option");
      option.value = id;
      option.textContent = id;
      option.selected = id === chosen;
      return option;
    }),
  );
  const body = $("#items tbody");
  body.replaceChildren(
    ...[...state.items.values()].map((item) => {
      const row = document.createElement("tr");
      row.dataset.id = item.id;
      row.dataset.state = item.state;
      if (item.id === chosen) row.className = "selected";
      for (const value of [item.id, item.state, item.worker ?? "-", shortTime(item.deadline), item.version ?? "-"]) {
        const cell = document.createElement("td");
        cell.textContent = String(value);
        row.append(cell);
      }
      return row;
    }),
  );
  for (const rect of document.querySelectorAll("#diagram rect.state")) {
    const here = [...state.items.values()].filter((i) => i.state === rect.dataset.state);
    rect.classList.toggle("occupied", here.length > 0);
    rect.classList.toggle("selected", here.some((i) => i.id === chosen));
  }
  const item = state.items.get(chosen);
  $("#where").textContent = item ? `${item.id} is ${item.state}` : "No item yet.";
  $("#where").dataset.state = item ? item.state : "";
  prefill();
  $("#env").textContent = state.env || "none";
  for (const id of ["#new-item", "#poll", "#stats", "#list"]) $(id).disabled = !state.env;
  for (const id of ["#ack", "#get", "#heartbeat", "#stop", "#update"]) $(id).disabled = !item;
}

function prefill() {
  const token = state.tokens.get(`${$("#worker").value} ${state.selected}`);
  $("#expected").value = token ?? "";
}

// --- the operations -----------------------------------------------------------------------------------------

function worker() {
  return $("#worker").value;
}

function parsed(input, what) {
  try {
    return JSON.parse(input.value);
  } catch {
    setStatus(`${what} is not JSON`);
    input.focus();
    return undefined;
  }
}

// Each click: the operation, then every item read back; body[data-done] counts the clicks handled (for tests).
async function act(work) {
  setStatus("working…");
  try {
    await work();
    await refresh();
    setStatus("ready");
  } catch (error) {
    setStatus(`error: ${error.message}`);
  } finally {
    document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
  }
}

const operations = {
  "new-env": async () => {
    const { status, json } = await testRoute("", {});
    if (status === 201) {
      state.env = json.id;
      state.items.clear();
      state.selected = null;
    }
  },
  "new-item": async () => {
    const metadata = parsed($("#new-metadata"), "metadata");
    if (metadata === undefined) return;
    const hex = [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
    const session = state.dialect.session_prefix + hex;
    const { status, json } = await testRoute(`/${state.env}/work`, { session_id: session, metadata });
    if (status === 201) {
      state.items.set(json.id, { id: json.id, state: "queued" });
      state.selected = json.id;
    }
  },
  poll: async () => {
    const { status, json } = await send("GET", workPath(state.env, null, "poll"), { worker: worker() });
    if (status === 200 && json) {
      remember(json);
      state.selected = json.id;
    }
  },
  ack: async () => {
    const who = worker();
    const header = state.dialect.ack_checks_worker ? who : null; // a dialect that does not check it: no header
    const { status, json } = await send("POST", workPath(state.env, state.selected, "ack"), { worker: header, as: who });
    if (status === 200) {
      remember(json);
      const key = `${who} ${state.selected}`;
      if (!state.tokens.has(key)) state.tokens.set(key, "NO_HEARTBEAT"); // what a worker sends before any heartbeat
    }
  },
  heartbeat: async () => {
    const query = new URLSearchParams();
    if ($("#expected").value) query.set("expected_last_heartbeat", $("#expected").value);
    if ($("#ttl").value) query.set("desired_ttl_seconds", $("#ttl").value);
    const suffix = query.size ? "?" + query : "";
    const who = worker();
    const { status, json } = await send("POST", workPath(state.env, state.selected, "heartbeat") + suffix, { worker: who });
    if (status === 200 && json?.last_heartbeat) state.tokens.set(`${who} ${state.selected}`, json.last_heartbeat);
  },
  stop: async () => {
    const body = JSON.stringify({ force: $("#force").checked });
    const { status, json } = await send("POST", workPath(state.env, state.selected, "stop"), { worker: worker(), body });
    if (status === 200) remember(json); // a dialect whose stop answers 204 has no body: the item is read back
  },
  get: async () => {
    const { status, json } = await send("GET", workPath(state.env, state.selected), { worker: worker() });
    if (status === 200) remember(json);
  },
  update: async () => {
    const patch = parsed($("#patch"), "the metadata patch");
    if (patch === undefined) return;
    const body = JSON.stringify({ metadata: patch });
    const { status, json } = await send("POST", workPath(state.env, state.selected), { worker: worker(), body });
    if (status === 200) remember(json);
  },
  list: async () => {
    const query = new URLSearchParams();
    if ($("#limit").value) query.set("limit", $("#limit").value);
    if ($("#cursor-kind").value && $("#cursor").value) query.set($("#cursor-kind").value, $("#cursor").value);
    const suffix = query.size ? "?" + query : "";
    const { status, json } = await send("GET", workPath(state.env) + suffix, { worker: worker() });
    if (status === 200 && json) {
      for (const item of json.data || []) remember(item);
      const next = json.next_page || json.last_id;
      if (next) $("#cursor").value = next;
    }
  },
  stats: async () => {
    await send("GET", workPath(state.env, null, "stats"), { worker: worker() });
  },
};

// --- the clock ----------------------------------------------------------------------------------------------

async function moveClock(to, text) {
  state.now = to;
  showNow();
  const lapses = [];
  for (const item of state.items.values()) {
    if (!state.env) break;
    const why = await explainRequest("GET", workPath(state.env, item.id), { Authorization: AUTH }, null);
    if (why && why.rule && why.rule.kind === "accept") lapses.push({ id: item.id, why });
  }
  logClock(`${text}: now ${stamp(state.now)}`, lapses);
}

function seconds() {
  const n = Number($("#seconds").value);
  if (!Number.isFinite(n) || n <= 0) {
    setStatus("seconds must be a positive number");
    return null;
  }
  return n;
}

const clock = {
  advance: async () => {
    const n = seconds();
    if (n !== null) await moveClock(state.now + n * 1000, `clock +${n} s`);
  },
  back: async () => {
    const n = seconds();
    if (n !== null) await moveClock(state.now - n * 1000, `clock −${n} s`);
  },
  "next-deadline": async () => {
    const deadlines = [...state.items.values()]
      .map((i) => (i.deadline ? Date.parse(i.deadline) : NaN))
      .filter((t) => Number.isFinite(t) && t >= state.now);
    if (!deadlines.length) {
      setStatus("no item has a deadline ahead");
      return;
    }
    await moveClock(Math.min(...deadlines), "clock to the next deadline");
  },
};

// --- start --------------------------------------------------------------------------------------------------

function setStatus(text) {
  $("#status").textContent = text;
}

// Show the dialect `name`: the one shown before keeps its environment, items and tokens for when it is back.
function chooseDialect(name) {
  if (state.dialect) {
    const { env, items, tokens, selected } = state;
    state.sessions.set(state.dialect.name, { env, items, tokens, selected });
  }
  state.dialect = state.config.dialects.find((d) => d.name === name) || state.config.dialects[0];
  const kept = state.sessions.get(state.dialect.name) || { env: null, items: new Map(), tokens: new Map(), selected: null };
  Object.assign(state, kept);
  $("#worker-label").textContent = `Worker (${state.dialect.worker_header})`;
  $("#items-heading").textContent = `Items (${state.dialect.name})`;
  $("#dialect-help").textContent =
    `${state.dialect.work_path}; stop answers ${state.dialect.stop_status}` +
    `; ack ${state.dialect.ack_checks_worker ? "checks" : "does not check"} the worker`;
  const cursor = $("#cursor-kind");
  const none = cursor.options[0];
  cursor.replaceChildren(
    none,
    ...state.dialect.list_cursors.map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      return option;
    }),
  );
  $("#new-env").disabled = !state.dialect.test_routes;
}

async function start() {
  const response = await fetch("/_playground/config");
  state.config = await response.json();
  const select = $("#dialect");
  select.replaceChildren(
    ...state.config.dialects.map((d) => {
      const option = document.createElement("option");
      option.value = d.name;
      option.textContent = `${d.name} (${d.work_path})`;
      return option;
    }),
  );
  select.value = state.config.dialect;
  chooseDialect(select.value);
  select.addEventListener("change", () => {
    chooseDialect(select.value);
    render();
    setStatus(`speaking ${state.dialect.name}`);
  });
  state.now = Date.parse(state.config.now);
  showNow();
  if (!state.config.test_clock) {
    for (const button of document.querySelectorAll("#clock-controls button")) button.disabled = true;
    $("#now").textContent = "the wall clock (start with --test-clock, or run workstate playground)";
  }
  for (const [id, work] of Object.entries({ ...operations, ...clock })) {
    $("#" + id).addEventListener("click", () => act(work));
  }
  $("#item").addEventListener("change", () => {
    state.selected = $("#item").value;
    render();
  });
  $("#worker").addEventListener("input", prefill);
  render();
  document.body.dataset.ready = "true";
  setStatus("ready");
}

start().catch((error) => setStatus(`could not start: ${error.message}`));
