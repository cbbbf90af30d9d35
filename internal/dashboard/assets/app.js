// The georeg dashboard: polls /_georeg/v1/dashboard every second and
// /_georeg/v1/usage every 10 s, and redraws. No framework, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function seconds(s) {
  if (s === undefined) return "–";
  if (s < 1) return (s * 1000).toFixed(0) + " ms";
  return s.toFixed(1) + " s";
}

function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(0) + " KiB";
  if (n < 1 << 30) return (n / (1 << 20)).toFixed(1) + " MiB";
  return (n / (1 << 30)).toFixed(2) + " GiB";
}

// lagCell says how far region "to" is behind region "from" now: caught
// up (with the lag of the last change applied), or how many changes and
// bytes wait and how old the oldest one is; unreachable, wedged and not
// heard from yet say so. (The peer state "caught up" means the region
// caught up once since it started; whether it is behind now is in the
// counts.)
function lagCell(l) {
  if (!l) return el("td", { class: "num", "data-lag": "unknown" }, "–");
  const title = "last change applied " + seconds(l.lastLagSeconds) + " after its commit";
  const behind = l.eventsBehind > 0 || l.oldestUnappliedSeconds > 0;
  let state = behind ? "behind" : "caught up";
  if (l.wedged) state = "wedged";
  else if (l.state === "unreachable" || l.state === "not heard from yet") state = l.state;
  if (state === "caught up") {
    return el("td", { class: "num caught-up", "data-lag": state, title }, "caught up (" + seconds(l.lastLagSeconds) + ")");
  }
  const parts = [];
  if (state !== "behind") parts.push(state);
  if (l.eventsBehind > 0) parts.push(l.eventsBehind + " behind");
  if (l.backlogBytes > 0) parts.push(bytes(l.backlogBytes));
  if (l.oldestUnappliedSeconds) parts.push("oldest " + seconds(l.oldestUnappliedSeconds));
  return el("td", { class: "num behind", "data-lag": state, title }, parts.join(" · "));
}

function draw(d) {
  $("#answered").textContent = "answered by " + d.region;
  $("#updated").textContent = "updated " + new Date(d.at).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  const names = d.regions.map((r) => r.name);

  fill($("#regions tbody"), d.regions.map((r) =>
    el("tr", { "data-region": r.name, "data-state": r.state },
      el("td", {}, r.name),
      el("td", {}, el("span", { class: "state " + r.state }, r.state)),
      el("td", { class: "routed", "data-routed": r.routed }, r.routed),
      el("td", { "data-pushes": r.pushes || "", title: r.error || "" }, r.pushes || "?"),
      el("td", { class: "digest", title: r.error || "" }, r.endpoint))));

  $("#lag thead").replaceChildren(el("tr", {}, el("th", {}, "to \\ from"), ...names.map((n) => el("th", {}, n))));
  fill($("#lag tbody"), names.map((to) =>
    el("tr", { "data-region": to }, el("th", {}, to),
      ...names.map((from) => from === to ? el("td", {}, "") : lagCell((d.lag[to] || {})[from])))));

  $("#images thead").replaceChildren(el("tr", {}, el("th", {}, "Image"), el("th", {}, "Digest"),
    ...names.map((n) => el("th", {}, n))));
  fill($("#images tbody"), d.images.map((img) => {
    const name = img.repository + ":" + img.tag;
    return el("tr", { "data-image": name },
      el("td", {}, name),
      el("td", { class: "digest", title: img.digest }, img.digest.slice(7, 19)),
      ...names.map((n) => {
        const st = img.regions[n] || "pending";
        return el("td", { class: st, "data-region": n }, st === "present" ? "✓ present" : "… pending");
      }));
  }));
  $("#no-images").hidden = d.images.length > 0;

  const utc = (t) => new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  const deleted = d.deleted || [];
  $("#deleted-section").hidden = deleted.length === 0;
  fill($("#deleted tbody"), deleted.map((m) =>
    el("tr", { "data-deleted": m.repository + "@" + m.digest },
      el("td", {}, m.repository),
      el("td", { class: "digest", title: m.digest }, m.digest.slice(7, 19)),
      el("td", {}, (m.tags || []).join(", ")),
      el("td", {}, utc(m.deletedAt)),
      el("td", {}, m.deletedIn),
      el("td", { class: "restorable" }, "deleted (restorable until " + utc(m.restorableUntil) + ")"))));

  fill($("#repositories tbody"), d.repositories.map((r) =>
    el("tr", { "data-repository": r.name }, el("td", {}, r.name), el("td", { class: "num" }, r.tags))));
}

// drawUsage fills the usage panel from /_georeg/v1/usage (every region's
// figures of a little while ago, recent=true, and the estimate).
function drawUsage(u) {
  const sum = (m) => Object.values(m || {}).reduce((a, b) => a + b, 0);
  const rows = [...u.regions].sort((a, b) => a.region.localeCompare(b.region));
  fill($("#usage tbody"), rows.map((r) =>
    el("tr", { "data-region": r.region, "data-stored": r.storedBytes, "data-served": r.servedBytes },
      el("td", {}, r.region),
      el("td", { class: "num" }, bytes(r.storedBytes)),
      el("td", { class: "num" }, bytes(r.logicalBytes)),
      el("td", { class: "num" }, r.manifests + " (" + bytes(r.manifestBytes) + ")"),
      el("td", { class: "num" }, r.repositories),
      el("td", { class: "num" }, bytes(r.servedBytes)),
      el("td", { class: "num" }, bytes(r.servedReadThroughBytes)),
      el("td", { class: "num", title: JSON.stringify(r.receivedBytes) }, bytes(sum(r.receivedBytes) + sum(r.receivedReadThroughBytes))))));
  const e = u.estimate;
  const money = (v) => v.toFixed(2) + " " + e.currency;
  $("#estimate").textContent = !e ? "" :
    "Estimate (georeg config prices): replication " + bytes(e.replicationBytes) + " = " + money(e.replicationCost) +
    "; from " + e.home + " alone, pulls in other regions " + bytes(e.remotePullBytes) + " = " + money(e.singleRegionCost) +
    "; saved " + money(e.saved) + "." +
    (u.unreachable && u.unreachable.length ? " Not counted: " + u.unreachable.join(", ") + " did not answer." : "");
}

// Auth: the dashboard signs in with the token endpoint (the OAuth2
// password grant, as containerd does) and sends the access token as a
// bearer; it never uses basic auth, so the browser caches no credential
// a page on another site could ride on. The tokens live in this tab's
// sessionStorage; an expired access token is renewed with the refresh
// token, and when that fails the sign-in form comes back.
const store = window.sessionStorage;

async function tokenGrant(form) {
  const resp = await fetch("/oauth2/token", {
    method: "POST", cache: "no-store", credentials: "omit",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(Object.assign({ client_id: "georeg-dashboard" }, form)),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok || !body.access_token) {
    const msg = (body.errors && body.errors[0] && body.errors[0].message) || resp.statusText;
    throw new Error(resp.status + " " + msg);
  }
  store.setItem("georeg-access", body.access_token);
  if (body.refresh_token) store.setItem("georeg-refresh", body.refresh_token);
}

async function dashboard(path) {
  const get = () => {
    const headers = { "X-Georeg-Client": "dashboard" };
    const token = store.getItem("georeg-access");
    if (token) headers.Authorization = "Bearer " + token;
    return fetch(path, { cache: "no-store", credentials: "omit", headers });
  };
  let resp = await get();
  if (resp.status === 401 && store.getItem("georeg-refresh")) {
    try {
      await tokenGrant({ grant_type: "refresh_token", refresh_token: store.getItem("georeg-refresh") });
      resp = await get();
    } catch (e) {
      store.removeItem("georeg-refresh");
    }
  }
  if (resp.status === 401) {
    store.removeItem("georeg-access");
    $("#login").hidden = false;
    throw new Error("sign in to see the registry");
  }
  return resp;
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await tokenGrant({ grant_type: "password", username: $("#login-user").value, password: $("#login-password").value });
    $("#login-password").value = "";
    $("#login").hidden = true;
    $("#login-error").hidden = true;
    poll();
    pollUsage();
  } catch (e) {
    $("#login-error").textContent = "cannot sign in: " + e.message;
    $("#login-error").hidden = false;
  }
});

async function poll() {
  try {
    const resp = await dashboard("/_georeg/v1/dashboard");
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      const msg = (body.errors && body.errors[0] && body.errors[0].message) || resp.statusText;
      throw new Error(resp.status + " " + msg);
    }
    draw(await resp.json());
    $("#error").hidden = true;
  } catch (e) {
    $("#error").textContent = "cannot read the registry: " + e.message;
    $("#error").hidden = false;
  }
}

// The usage panel: every 10 s (each region reads its figure again at
// most every 10 s: region.RecentUsage).
async function pollUsage() {
  try {
    const resp = await dashboard("/_georeg/v1/usage?since=24h&recent=true");
    if (resp.ok) drawUsage(await resp.json());
  } catch (e) {
    // The main poll reports what is wrong.
  }
}

poll();
setInterval(poll, 1000);
pollUsage();
setInterval(pollUsage, 10000);
