// The georeg dashboard: polls /_georeg/v1/dashboard every second and
// redraws. No framework, no build step.
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

function draw(d) {
  $("#answered").textContent = "answered by " + d.region;
  $("#updated").textContent = "updated " + new Date(d.at).toLocaleTimeString();
  const names = d.regions.map((r) => r.name);

  fill($("#regions tbody"), d.regions.map((r) =>
    el("tr", { "data-region": r.name, "data-state": r.state },
      el("td", {}, r.name),
      el("td", {}, el("span", { class: "state " + r.state }, r.state)),
      el("td", {}, r.routing ? "on" : "off"),
      el("td", { "data-pushes": r.pushes || "", title: r.error || "" }, r.pushes || "?"),
      el("td", { class: "digest", title: r.error || "" }, r.endpoint))));

  $("#lag thead").replaceChildren(el("tr", {}, el("th", {}, "to \\ from"), ...names.map((n) => el("th", {}, n))));
  fill($("#lag tbody"), names.map((to) =>
    el("tr", { "data-region": to }, el("th", {}, to),
      ...names.map((from) => el("td", { class: "num" },
        from === to ? "" : seconds((d.lag[to] || {})[from]))))));

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

  fill($("#repositories tbody"), d.repositories.map((r) =>
    el("tr", { "data-repository": r.name }, el("td", {}, r.name), el("td", { class: "num" }, r.tags))));
}

async function poll() {
  try {
    const resp = await fetch("/_georeg/v1/dashboard", { cache: "no-store", credentials: "same-origin" });
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

poll();
setInterval(poll, 1000);
