// The live page of catalyst-cutover. Everything it shows comes from the service's own
// authorized routes, called with the console's session cookie when the service checks
// sessions (forward authentication) and there is one, else with the operator's bearer
// token (asked for on the first 401, kept in sessionStorage, this tab only). The event stream is read with fetch and a streaming reader, because
// EventSource cannot send an Authorization header; after a drop it reconnects with
// Last-Event-ID, so the frames missed meanwhile are replayed.
"use strict";

const TOKEN_KEY = "catalyst-cutover-token";
const EVENTS_SHOWN = 200;
// Reconnection waits grow from the first to the last, so a service that is down is not
// asked again and again.
const RECONNECT_MS = [500, 1000, 2000, 5000, 10000];

const STATES = {
  "": { symbol: "○", text: "pending" },
  running: { symbol: "▶", text: "running" },
  success: { symbol: "✔", text: "succeeded" },
  failed: { symbol: "✘", text: "failed" },
  skipped: { symbol: "↷", text: "skipped" },
};

const PHASES = {
  idle: { symbol: "○", text: "Not started" },
  running: { symbol: "▶", text: "Running" },
  failed: { symbol: "✘", text: "Failed" },
  complete: { symbol: "✔", text: "Complete: the cluster is sovereign" },
  "rolling-back": { symbol: "↶", text: "Rolling the registry pivot back" },
  "rolled-back": { symbol: "↶", text: "Registry pivot rolled back" },
  "rollback-failed": { symbol: "✘", text: "Rollback failed" },
};

// The kinds of tether, in the report's order: what each is, for a person.
const TETHER_KINDS = {
  "git-repository": "Flux GitRepositories",
  "helm-repository": "Flux HelmRepositories",
  "oci-repository": "Flux OCIRepositories",
  "helm-release": "Flux HelmReleases with an upstream chart",
  image: "Images from an upstream registry no mirror covers",
  "container-url": "Container env values and args naming an upstream",
  "crossplane-provider": "Crossplane Provider packages",
  vcluster: "vcluster registry settings",
  "unacked-node": "Nodes whose agent has not acknowledged the pivot",
};

const page = {
  status: null,
  permissions: null,
  lastEventId: null,
  reconnects: 0,
  resumed: 0,
  signingIn: null,
  // The step rows by step name: step names are data, so they never become element ids
  // (a step named "rows" would otherwise be found as the table's own body).
  rows: new Map(),
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// --- calls to the service -----------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function headers(extra) {
  const h = Object.assign({}, extra);
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

// Asks for a token (once at a time, however many calls were refused).
function signIn(reason) {
  if (!page.signingIn) {
    page.signingIn = new Promise((resolve) => {
      const dialog = $("login");
      $("login-reason").textContent = reason;
      $("token").value = "";
      const form = $("login-form");
      const submit = (event) => {
        event.preventDefault();
        const value = $("token").value.trim();
        if (!value) return;
        sessionStorage.setItem(TOKEN_KEY, value);
        form.removeEventListener("submit", submit);
        dialog.close();
        page.signingIn = null;
        resolve();
      };
      form.addEventListener("submit", submit);
      // Without a token nothing works: Escape does not close this dialog.
      dialog.addEventListener("cancel", (event) => event.preventDefault());
      dialog.showModal();
      $("token").focus();
    });
  }
  return page.signingIn;
}

// A JSON call; on 401 the operator is asked for a token and the call is made again.
async function call(method, path, body) {
  for (;;) {
    const init = { method, headers: headers({ Accept: "application/json" }) };
    // Every change is sent as JSON: a session-authenticated change must be (the service
    // refuses anything else as cross-site).
    if (body !== undefined || method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body === undefined ? {} : body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      const answer = await response.json().catch(() => ({}));
      await signIn(refusal(answer, "The service needs a bearer token."));
      continue;
    }
    const answer = await response.json().catch(() => ({}));
    return { status: response.status, body: answer };
  }
}

function refusal(answer, fallback) {
  return answer && answer.detail ? answer.detail : fallback;
}

// --- rendering ------------------------------------------------------------------------

function time(value) {
  if (!value) return el("span", { class: "muted", text: "—" });
  const at = new Date(value);
  if (Number.isNaN(at.getTime())) return document.createTextNode(value);
  return el("time", { datetime: value, title: value, text: at.toISOString().slice(11, 19) + " UTC" });
}

function duration(started, finished) {
  if (!started) return "—";
  const end = finished ? new Date(finished) : new Date();
  const ms = end - new Date(started);
  if (!(ms >= 0)) return "—";
  const s = Math.round(ms / 1000);
  const text = s < 60 ? s + " s" : Math.floor(s / 60) + " min " + (s % 60) + " s";
  return finished ? text : text + " so far";
}

function stateCell(result) {
  const state = STATES[result] || { symbol: "?", text: result };
  return el("td", { class: "state", "data-result": result || "pending" },
    el("span", { "aria-hidden": "true", text: state.symbol + " " }), state.text);
}

function logsCell(step) {
  // The step's pod log, fetched only when the operator opens it.
  const details = el("details", { class: "logs", "data-step": step.name });
  details.append(el("summary", { text: "Logs" }), el("pre", { class: "log-text" }));
  details.addEventListener("toggle", () => (details.open ? openLogs(details) : closeLogs(details)));
  return el("td", {}, details);
}

async function openLogs(details) {
  const pre = details.querySelector("pre");
  const controller = new AbortController();
  details.abort = controller;
  pre.textContent = "Loading…";
  try {
    const response = await fetch("/cutover/steps/" + encodeURIComponent(details.dataset.step) + "/logs", {
      headers: headers({ Accept: "text/plain" }),
      signal: controller.signal,
    });
    if (response.status === 404) {
      const answer = await response.json().catch(() => ({}));
      pre.textContent = refusal(answer, "This service keeps no logs for the step.");
      return;
    }
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      pre.textContent = "HTTP " + response.status + ": " + refusal(answer, "");
      return;
    }
    pre.textContent = "";
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pre.textContent += decoder.decode(value, { stream: true });
    }
  } catch (error) {
    if (error.name !== "AbortError") pre.textContent = "Cannot read the log: " + error.message;
  }
}

function closeLogs(details) {
  if (details.abort) details.abort.abort();
}

function stepRow(step, index, status) {
  let row = page.rows.get(step.name);
  if (!row) {
    row = el("tr", { "data-step": step.name });
    page.rows.set(step.name, row);
    for (let i = 0; i < 8; i++) row.append(el("td"));
    row.append(logsCell(step));
  }
  const result = step.result || "";
  row.className = "step state-" + (result || "pending");
  row.dataset.result = result || "pending";
  const cells = [
    el("td", { class: "num", text: String(index + 1) }),
    el("th", { scope: "row", text: step.name }),
    stateCell(result),
    el("td", { class: "num attempt", text: step.attempt ? String(step.attempt) : "—" }),
    el("td", {}, time(step.startedAt)),
    el("td", {}, time(step.finishedAt)),
    el("td", { class: "num duration", text: duration(step.startedAt, step.finishedAt) }),
    el("td", { class: "job" }, step.jobName ? el("code", { text: step.jobName }) : el("span", { class: "muted", text: "—" })),
  ];
  if (result === "failed" && status.failedStep === step.name && status.lastError) {
    cells[2].append(el("pre", { class: "error", text: status.lastError }));
  }
  for (let i = 0; i < cells.length; i++) row.children[i].replaceWith(cells[i]);
  return row;
}

function render(status) {
  page.status = status;
  const phase = PHASES[status.phase] || { symbol: "?", text: status.phase };
  const done = status.steps.filter((s) => s.result === "success" || s.result === "skipped").length;
  let summary = phase.symbol + " " + phase.text + " — " + done + " of " + status.totalSteps + " steps done";
  if (status.phase === "running" && status.currentStep) summary += ", running " + status.currentStep;
  $("summary").textContent = summary;
  $("summary").dataset.phase = status.phase;
  $("progress").value = status.progressPercent;
  $("progress-text").textContent = status.progressPercent + "%";
  const times = $("times");
  times.replaceChildren();
  if (status.cutoverStartedAt) times.append("Started ", time(status.cutoverStartedAt));
  if (status.cutoverLastAttemptStartedAt && status.cutoverLastAttemptStartedAt !== status.cutoverStartedAt) {
    times.append("; this attempt started ", time(status.cutoverLastAttemptStartedAt));
  }
  if (status.cutoverFinishedAt) times.append("; finished ", time(status.cutoverFinishedAt));
  if (status.tethers) tetherSummary(status.tethers);
  const failed = status.phase === "failed" && status.failedStep;
  $("failure").hidden = !failed;
  $("failed-step").textContent = failed ? status.failedStep : "";
  $("last-error").textContent = failed ? status.lastError : "";
  const rows = status.steps.map((step, index) => stepRow(step, index, status));
  const body = $("step-rows");
  rows.forEach((row, index) => {
    if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
  });
  while (body.children.length > rows.length) body.lastElementChild.remove();
  const shown = new Set(status.steps.map((s) => s.name));
  for (const name of page.rows.keys()) if (!shown.has(name)) page.rows.delete(name);
  renderActions();
}

// The figures of the tether report (the status body's `tethers`, a cutover-tethers
// frame's): the summary line. `unseenSources` leaves out kinds that are not installed.
function tetherSummary(figures) {
  const node = $("tether-summary");
  let text;
  if (!figures.synced) text = "The tether report is still listing the cluster…";
  else if (figures.count === 0) text = "No tethers: nothing the report sees points to an upstream host.";
  else text = (figures.count === 1 ? "1 tether to an upstream host" : figures.count + " tethers to upstream hosts") +
    " (" + figures.gating + " gating completion).";
  const unseen = figures.unseenSources || 0;
  if (unseen) text += " " + unseen + (unseen === 1 ? " source cannot" : " sources cannot") + " be seen: none cannot be told.";
  node.textContent = text;
  node.dataset.count = String(figures.count);
  node.dataset.state = !figures.synced || (figures.count === 0 && unseen) ? "blind"
    : figures.count === 0 ? "none" : "tethered";
}

function tetherRow(tether) {
  const object = tether.namespace ? tether.namespace + "/" + tether.name : tether.name;
  return el("tr", { class: "tether", "data-object": object, "data-field": tether.field },
    el("th", { scope: "row", text: object }),
    el("td", {}, el("code", { text: tether.field })),
    el("td", {}, el("code", { text: tether.value })),
    el("td", { text: tether.host }),
    el("td", {}, time(tether.since)));
}

// The report's list: the sources it cannot see (or that are not installed), and per kind
// a table. The summary comes from the figures the service computes (status body, frames).
function renderTethers(report) {
  $("tether-unseen").replaceChildren(...report.unseen.map((u) =>
    el("li", { "data-source": u.source }, el("code", { text: u.source }), ": " + u.reason)));
  const groups = [];
  for (const [kind, title] of Object.entries(TETHER_KINDS)) {
    const tethers = report.tethers.filter((t) => t.kind === kind);
    if (!tethers.length) continue;
    const head = el("tr", {}, ...["Object", "Field", "Value", "Host", "Since"].map((h) => el("th", { scope: "col", text: h })));
    groups.push(el("section", { class: "tether-group", "data-kind": kind },
      el("h3", { text: title + " (" + kind + "): " + tethers.length }),
      el("table", {}, el("thead", {}, head), el("tbody", {}, ...tethers.map(tetherRow)))));
  }
  const known = new Set(Object.keys(TETHER_KINDS));
  const others = report.tethers.filter((t) => !known.has(t.kind));
  if (others.length) {
    groups.push(el("section", { class: "tether-group", "data-kind": "other" },
      el("h3", { text: "Other kinds: " + others.length }),
      el("table", {}, el("tbody", {}, ...others.map(tetherRow)))));
  }
  $("tether-groups").replaceChildren(...groups);
}

// Reads the tether report's list again.
const refreshTethers = coalesced(async () => {
  const { status, body } = await call("GET", "/cutover/tethers");
  if (status === 200) renderTethers(body);
  else $("tether-summary").textContent = "Cannot read the tether report (HTTP " + status + "): " + refusal(body, "");
});

function renderActions() {
  const status = page.status;
  const may = page.permissions || {};
  const phase = status ? status.phase : "";
  // A button is shown only to a caller allowed to use it, and only when it applies.
  $("start").hidden = !(may.start && ["idle", "rolled-back", "rollback-failed"].includes(phase));
  $("retry").hidden = !(may.retry && phase === "failed");
  $("abort").hidden = !(may.abort && phase === "running");
  $("sign-in").hidden = !token();
  $("actions").dataset.permissions = page.permissions ? "loaded" : "unknown";
}

// Running steps' durations grow while nothing else changes.
function tick() {
  if (!page.status) return;
  for (const step of page.status.steps) {
    if (step.result !== "running") continue;
    const row = page.rows.get(step.name);
    const cell = row && row.querySelector(".duration");
    if (cell) cell.textContent = duration(step.startedAt, "");
  }
}

// --- the event stream -------------------------------------------------------------------

function showEvent(id, name, frame) {
  const list = $("events");
  const item = el("li", { class: "level-" + (frame.level || "info"), "data-id": id || "", "data-event": name },
    time(frame.time), " ", el("strong", { text: name }), " ", frame.message || "");
  list.append(item);
  while (list.children.length > EVENTS_SHOWN) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

// `read`, made to run one at a time: asked again while it runs, it runs once more after,
// however many frames asked meanwhile.
function coalesced(read) {
  let running = null;
  let again = false;
  return () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await read();
      } while (again);
    })().finally(() => { running = null; });
    return running;
  };
}

// Brings the whole status up to date after a frame.
const refresh = coalesced(async () => {
  const { status, body } = await call("GET", "/cutover");
  if (status === 200) render(body);
});

function onFrame(id, name, data, first) {
  if (id) page.lastEventId = id;
  let frame;
  try {
    frame = JSON.parse(data);
  } catch {
    return;
  }
  if (name === "cutover-status") {
    // Its message is the status ConfigMap as JSON, for the admin console; a person reads
    // the phase.
    render(frame.status);
    // A snapshot on (re)connect: tether frames may have been missed meanwhile.
    if (first) refreshTethers().catch(() => {});
    showEvent(id, name, { ...frame, message: "cutover is " + frame.status.phase +
      " (" + frame.status.progressPercent + "% done)" });
    return;
  }
  if (first && page.reconnects > 0) {
    page.resumed += 1;
    $("connection").dataset.resumed = String(page.resumed);
  }
  showEvent(id, name, frame);
  if (name === "cutover-tethers") {
    if (frame.tethers) tetherSummary(frame.tethers);
    refreshTethers().catch(() => {});
    return;
  }
  refresh().catch(() => {});
}

// One connection: frames until the stream ends. Answers whether it was open.
async function follow() {
  const init = { headers: headers({ Accept: "text/event-stream" }), cache: "no-store" };
  if (page.lastEventId) init.headers["Last-Event-ID"] = page.lastEventId;
  const response = await fetch("/cutover/events", init);
  if (response.status === 401) {
    const answer = await response.json().catch(() => ({}));
    await signIn(refusal(answer, "The service needs a bearer token."));
    return false;
  }
  if (!response.ok || !response.body) {
    const answer = await response.json().catch(() => ({}));
    setConnection("Not live: HTTP " + response.status + " " + refusal(answer, ""), "down");
    return false;
  }
  if (!page.permissions) loadPermissions().catch(() => {});
  setConnection(page.reconnects && page.lastEventId
    ? "● Live (resumed after event " + page.lastEventId + ")"
    : "● Live", "live");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let first = true;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id = null;
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "id") id = value;
        else if (field === "event") name = value;
        else if (field === "data") data.push(value);
      }
      if (data.length) {
        onFrame(id, name, data.join("\n"), first);
        first = false;
      }
    }
  }
  return true;
}

function setConnection(text, state) {
  const node = $("connection");
  node.textContent = text;
  node.dataset.state = state;
}

async function stream() {
  let failures = 0;
  for (;;) {
    let opened = false;
    try {
      opened = await follow();
    } catch (error) {
      setConnection("Not live: " + error.message, "down");
    }
    failures = opened ? 0 : failures + 1;
    page.reconnects += 1;
    $("connection").dataset.reconnects = String(page.reconnects);
    if (opened) setConnection("Reconnecting…", "reconnecting");
    const wait = RECONNECT_MS[Math.min(failures, RECONNECT_MS.length - 1)];
    await new Promise((resolve) => setTimeout(resolve, opened ? 0 : wait));
  }
}

// --- actions ------------------------------------------------------------------------

function confirmAction(title, text, label) {
  return new Promise((resolve) => {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = label;
    const form = $("confirm-form");
    const finish = (answer) => {
      form.removeEventListener("submit", submit);
      $("confirm-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("close", cancel);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const submit = (event) => {
      event.preventDefault();
      finish(true);
    };
    const cancel = () => finish(false);
    form.addEventListener("submit", submit);
    $("confirm-cancel").addEventListener("click", cancel);
    dialog.addEventListener("close", cancel);
    dialog.showModal();
    // The safe answer has the focus: Enter alone does not start anything.
    $("confirm-cancel").focus();
  });
}

async function act(button, method, path, title, text, label) {
  if (!(await confirmAction(title, text, label))) {
    button.focus();
    return;
  }
  const result = $("action-result");
  result.textContent = "Sending…";
  try {
    const { status, body } = await call(method, path);
    result.textContent = status < 300
      ? label + ": accepted (" + (body.outcome || "HTTP " + status) + ")."
      : label + " refused (HTTP " + status + ", " + (body.error || "error") + "): " + refusal(body, "");
    result.dataset.status = String(status);
    if (status < 300 && body.steps) render(body);
  } catch (error) {
    result.textContent = label + " failed: " + error.message;
  }
  $("summary").focus();
}

async function loadPermissions() {
  const { status, body } = await call("GET", "/cutover/permissions");
  page.permissions = status === 200 ? body : null;
  if (status !== 200) {
    $("action-result").textContent = "Cannot tell which actions you may take (HTTP " + status + "): " + refusal(body, "");
  }
  renderActions();
}

function wire() {
  $("summary").setAttribute("tabindex", "-1");
  $("start").addEventListener("click", (e) => act(e.currentTarget, "POST", "/cutover",
    "Start the cutover?", "Every step runs in order, and the cluster's registries and git hosts switch to the local Harbor and Gitea.", "Start"));
  $("retry").addEventListener("click", (e) => act(e.currentTarget, "POST", "/cutover/retry",
    "Retry the cutover?", "The cutover resumes from step " + ((page.status && page.status.failedStep) || "?") + " with a new attempt.", "Retry"));
  $("abort").addEventListener("click", (e) => act(e.currentTarget, "POST", "/cutover/abort",
    "Abort the running step?", "The step " + ((page.status && page.status.currentStep) || "") + " is stopped (its Job deleted) and recorded failed, naming you.", "Abort"));
  $("sign-in").addEventListener("click", async () => {
    await signIn("Another bearer token for this tab.");
    await loadPermissions();
  });
}

async function main() {
  wire();
  // A service unreachable for a moment must not leave the page dead: the stream below
  // keeps trying, and its first frame brings the status.
  try {
    await loadPermissions();
    const { status, body } = await call("GET", "/cutover");
    if (status === 200) render(body);
    else $("summary").textContent = "Cannot read the status (HTTP " + status + "): " + refusal(body, "");
    await refreshTethers();
  } catch (error) {
    $("summary").textContent = "Cannot reach the service: " + error.message;
  }
  setInterval(tick, 1000);
  stream();
}

main();
