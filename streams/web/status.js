// The status page's script: reads the worker's API with the bearer token and puts what it
// returns on the page as text (never as markup), refreshing every few seconds.
"use strict";

const TOKEN_KEY = "accessdrift.token";
const REFRESH_MS = 5000;
const SEVERITY_RANK = { critical: 0, high: 1, medium: 2, low: 3 };

class Unauthorized extends Error {}

function takeTokenFromFragment() {
  // A link like /#token=... : the fragment never reaches a server; drop it from the address
  // bar and the history as soon as it is read.
  const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new Unauthorized("no token");
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${token}` },
    cache: "no-store",
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw new Unauthorized((await response.json()).error);
  }
  const body = await response.json();
  return { status: response.status, body };
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function svg(tag, attributes) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, seconds);
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${(s / 60).toFixed(s < 600 ? 1 : 0)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function severityCell(severity) {
  const td = el("td");
  td.append(el("span", severity, `badge ${severity}`));
  return td;
}

function access(finding) {
  if (finding.system) return `${finding.system} · ${finding.entitlement}`;
  if (finding.device_id) return `device ${finding.device_id}`;
  return "–";
}

function showLogin(message) {
  document.getElementById("main").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("token").focus();
}

function renderFindings(body) {
  const now = Date.now();
  const findings = [...body.findings].sort(
    (a, b) =>
      SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] ||
      Date.parse(a.deadline) - Date.parse(b.deadline),
  );
  const tbody = document.querySelector("#findings tbody");
  tbody.replaceChildren();
  let oldest = null;
  for (const finding of findings) {
    const overdue = (now - Date.parse(finding.deadline)) / 1000;
    oldest = oldest === null ? overdue : Math.max(oldest, overdue);
    const tr = row([
      severityCell(finding.severity),
      finding.trigger,
      finding.identity_id,
      access(finding),
      duration(overdue),
      finding.summary,
    ]);
    tr.dataset.findingId = finding.finding_id;
    tr.dataset.identity = finding.identity_id;
    tr.title = `finding ${finding.finding_id}, triggered ${finding.triggered_at}, deadline ${finding.deadline}`;
    tr.addEventListener("click", () => showPicture(finding.identity_id));
    tbody.append(tr);
  }
  document.getElementById("open-count").textContent = String(body.count);
  document.getElementById("urgent-count").textContent = String(
    findings.filter((f) => f.severity === "critical" || f.severity === "high").length,
  );
  document.getElementById("oldest").textContent = oldest === null ? "–" : duration(oldest);
  document.getElementById("findings-note").textContent =
    (body.count === 0 ? "No finding is open. " : "") +
    (body.truncated ? `Showing the first ${findings.length} of ${body.count}. ` : "") +
    "Click a finding for the identity's access picture.";
  document.getElementById("scope").textContent =
    `partitions ${body.partitions.join(", ") || "none yet"}`;
}

function table(headings, rows, emptyText) {
  if (rows.length === 0) return el("p", emptyText, "muted");
  const t = el("table");
  const head = document.createElement("tr");
  for (const heading of headings) head.append(el("th", heading));
  t.append(el("thead"));
  t.tHead.append(head);
  const tbody = el("tbody");
  // A row is its cells, or a row already built (with data attributes of its own).
  for (const cells of rows) tbody.append(cells instanceof Node ? cells : row(cells));
  t.append(tbody);
  return t;
}

function renderPicture(picture) {
  const box = document.getElementById("picture");
  box.replaceChildren();
  const facts = el("dl", null, "facts");
  const fact = (name, value) => {
    facts.append(el("dt", name), el("dd", value === null || value === undefined ? "–" : value));
  };
  fact("identity", picture.identity_id);
  fact("kind", picture.identity_kind);
  fact("status", picture.status ? `${picture.status} since ${picture.status_since}` : null);
  fact("role", picture.role);
  fact("owner", picture.owner_id);
  fact("owns", picture.owns.join(", ") || null);
  box.append(facts);
  box.append(el("h3", "Entitlements"));
  const entitlements = table(
    ["System", "Entitlement", "Kind", "Privileged", "Device", "Granted"],
    picture.entitlements.map((e) => [
      e.system, e.entitlement, e.kind, e.privileged ? "yes" : "no", e.device_id || "–",
      e.granted_at || "–",
    ]),
    "Holds no entitlement.",
  );
  entitlements.id = "entitlements";
  box.append(entitlements);
  box.append(el("h3", "Devices"));
  box.append(
    table(
      ["Device", "Posture", "Trusted", "Since"],
      picture.devices.map((d) => [d.device_id, d.posture, d.trusted ? "yes" : "no", d.since]),
      "No device bound.",
    ),
  );
  box.append(el("h3", "Obligations"));
  box.append(
    table(
      ["Trigger", "State", "Severity", "Access", "Triggered", "Deadline"],
      picture.obligations.map((o) => [
        o.trigger, o.state, o.severity, access(o), o.triggered_at, o.deadline,
      ]),
      "Owes nothing.",
    ),
  );
  box.append(el("h3", "Exceptions"));
  box.append(
    table(
      ["Exception", "Access", "Approved", "Expires", "In force"],
      picture.exceptions.map((x) => [
        x.exception_id, access(x), x.approved_at, x.expires_at, x.in_force ? "yes" : "no",
      ]),
      "No exception.",
    ),
  );
}

async function showPicture(identity) {
  document.getElementById("identity").value = identity;
  const box = document.getElementById("picture");
  box.replaceChildren(el("p", "Loading…", "muted"));
  try {
    const { status, body } = await api(`/identities/${encodeURIComponent(identity)}`);
    if (status === 200) renderPicture(body);
    else box.replaceChildren(el("p", body.error, "error"));
  } catch (error) {
    if (error instanceof Unauthorized) showLogin(error.message);
    else box.replaceChildren(el("p", `The worker did not answer: ${error.message}`, "error"));
  }
}

function bar(onTime, late) {
  const width = 240;
  const total = onTime + late;
  const chart = svg("svg", { width, height: 18, role: "img", class: "bar" });
  const good = total ? (width * onTime) / total : 0;
  chart.append(svg("rect", { x: 0, y: 0, width: good, height: 18, class: "on-time" }));
  chart.append(svg("rect", { x: good, y: 0, width: width - good, height: 18, class: "late" }));
  chart.append(Object.assign(svg("title", {}), { textContent: `${onTime} on time, ${late} late` }));
  return chart;
}

function histogram(buckets) {
  // Per-bucket counts from the cumulative ones, one column per bucket.
  const counts = buckets.map(([, c], i) => c - (i ? buckets[i - 1][1] : 0));
  const most = Math.max(1, ...counts);
  const column = 14;
  const chart = svg("svg", {
    width: counts.length * column, height: 36, role: "img", class: "histogram",
  });
  counts.forEach((count, i) => {
    const height = (34 * count) / most;
    const bound = buckets[i][0];
    const rect = svg("rect", {
      x: i * column + 1, y: 36 - height, width: column - 2, height, class: "column",
    });
    rect.append(Object.assign(svg("title", {}), {
      textContent: `${count} revoked within ${bound === null ? "more than the last bound" : duration(bound)}`,
    }));
    chart.append(rect);
  });
  return chart;
}

function renderTimeToRevoke(body) {
  const box = document.getElementById("ttr");
  let onTime = 0;
  let late = 0;
  const rows = body.triggers.map((t) => {
    onTime += t.on_time;
    late += t.late;
    const label = el("td", `${t.trigger}${t.privileged ? " (privileged)" : ""}`);
    const share = el("td");
    share.append(bar(t.on_time, t.late));
    const within = t.within_window === null ? "–" : `${Math.round(100 * t.within_window)} %`;
    const shape = el("td");
    shape.append(histogram(t.buckets));
    const tr = row([
      label, share, within, String(t.on_time + t.late), duration(t.p50_s), duration(t.p90_s),
      shape,
    ]);
    tr.dataset.trigger = t.trigger;
    tr.dataset.privileged = String(t.privileged);
    return tr;
  });
  const shown = table(
    ["Trigger", "On time / late", "Within window", "Met", "p50", "p90", "Distribution"],
    rows,
    "No obligation has been met yet.",
  );
  shown.id = "ttr-table";
  box.replaceChildren(shown);
  document.getElementById("within").textContent =
    onTime + late ? `${Math.round((100 * onTime) / (onTime + late))} %` : "–";
}

async function refresh() {
  try {
    const [findings, ttr] = await Promise.all([
      api("/findings?status=open"),
      api("/time-to-revoke"),
    ]);
    if (findings.status !== 200) throw new Error(findings.body.error);
    renderFindings(findings.body);
    if (ttr.status === 200) renderTimeToRevoke(ttr.body);
    document.getElementById("login").hidden = true;
    document.getElementById("main").hidden = false;
    document.getElementById("refreshed").textContent =
      `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (error) {
    if (error instanceof Unauthorized) {
      showLogin(error.message === "no token" ? "" : error.message);
    } else {
      document.getElementById("refreshed").textContent =
        `the worker did not answer (${error.message}); retrying`;
    }
  }
}

function start() {
  takeTokenFromFragment();
  // Following a token link from the open page changes only the fragment: no reload.
  window.addEventListener("hashchange", () => {
    takeTokenFromFragment();
    refresh();
  });
  document.getElementById("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    refresh();
  });
  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const identity = document.getElementById("identity").value.trim();
    if (identity) showPicture(identity);
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
