/* workyard dashboard: router, API client, live event stream and small helpers.
 *
 * A page is one file in pages/ that calls Dash.page({...}) (see pages/README.md).
 * Pages read the hub's JSON views; the live stream (/ui/events, server-sent events)
 * tells the current page what happened, and the page refreshes what it shows.
 */
"use strict";

const Dash = (() => {
  const pages = [];
  const listeners = new Set();
  let current = null;       // {page, params, el}
  let auth = {enabled: document.body.dataset.auth === "on", roles: []};
  let source = null;

  // -- API ----------------------------------------------------------------------
  function token() { return localStorage.getItem("workyard.token") || ""; }

  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (token()) headers["Authorization"] = "Bearer " + token();
    const response = await fetch(path, Object.assign({}, options, {headers}));
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
    if (!response.ok) {
      const message = body && body.error ? body.error : response.status + " " + response.statusText;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function can(role) {
    if (!auth.enabled) return true;
    return auth.roles.includes(role) || auth.roles.includes("admin");
  }

  // -- helpers --------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function fmtNumber(n, digits = 1) {
    if (n === null || n === undefined) return "–";
    if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString();
    return Number.isInteger(n) ? String(n) : n.toFixed(digits);
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 1 : 0) + " ms";
    if (s < 120) return s.toFixed(s < 10 ? 2 : 1) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  function fmtTime(t) {
    if (!t) return "–";
    return new Date(t * 1000).toLocaleTimeString();
  }

  function fmtAgo(t) {
    if (!t) return "–";
    return fmtSeconds(Math.max(0, Date.now() / 1000 - t)) + " ago";
  }

  function badge(state) { return h("span", {class: "badge " + state, dataset: {state}}, state); }

  function bar(value, max, label) {
    const limit = max || Math.max(value, 1);
    const width = Math.min(100, 100 * value / limit);
    return h("span", {},
      h("span", {class: "bar" + (max && label === undefined && value >= max ? " full" : "")}, h("i", {style: `width:${width}%`})),
      h("span", {class: "bar-label"}, label !== undefined ? label : max ? `${value} / ${max}` : String(value)));
  }

  function sub(subscription) {
    const filter = Object.entries(subscription.filter || {})
      .map(([k, v]) => `${k}=${v.join(",")}`).join(" ");
    return h("span", {class: "sub"}, subscription.name + (filter ? ` (${filter})` : ""));
  }

  function link(href, text) { return h("a", {href}, text); }
  function taskLink(id) { return link("#/task/" + encodeURIComponent(id), id.slice(0, 12)); }
  function workerLink(id) { return id ? link("#/worker/" + encodeURIComponent(id), id) : "–"; }
  function queueLink(name) { return link("#/queue/" + encodeURIComponent(name), name); }

  function table(columns, rows, attrs) {
    if (!rows.length) return h("div", {class: "empty"}, attrs && attrs.empty || "none");
    return h("table", attrs,
      h("thead", {}, h("tr", {}, columns.map(c => h("th", {class: c.num ? "num" : null}, c.title)))),
      h("tbody", {}, rows.map(row => h("tr", row.attrs || {},
        columns.map(c => h("td", {class: c.num ? "num" : null}, c.cell(row.value !== undefined ? row.value : row)))))));
  }

  function showError(message) {
    const el = document.getElementById("error");
    el.hidden = !message;
    el.textContent = message || "";
  }

  /* A time-series chart (uPlot) that keeps its instance across refreshes. */
  function chart(el, title, series, data, options = {}) {
    const width = Math.max(320, el.clientWidth || 560);
    if (el._chart && el._chart.series.length === series.length + 1) {
      el._chart.setData(data);
      return el._chart;
    }
    el.textContent = "";
    el._chart = new uPlot({
      title, width, height: options.height || 200,
      scales: {x: {time: true}},
      series: [{}, ...series.map(s => Object.assign({width: 2, spanGaps: true, points: {show: false}}, s))],
      axes: [{}, {size: 60, values: options.seconds ? (u, vals) => vals.map(fmtSeconds) : undefined}],
    }, data, el);
    return el._chart;
  }

  // -- pages and routing ------------------------------------------------------------
  /* Register a page: {name, route: RegExp on the hash path, nav: label (optional),
   * order: its place in the header (default 100),
 * render(el, match): builds the page (may be async), refresh(): reloads its data,
   * event(ev): a live event (default: refresh soon after task/worker events),
   * throttle: ms between two refreshes (default 500)}. */
  function page(definition) { pages.push(definition); }

  function route() {
    const path = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
    for (const p of pages) {
      const match = path.match(p.route);
      if (match) return {page: p, match};
    }
    return {page: pages.find(p => p.name === "overview"), match: ["/"]};
  }

  async function show() {
    const {page: p, match} = route();
    const el = document.getElementById("page");
    el.textContent = "";
    el.dataset.page = p.name;
    const state = {page: p, match, el, timer: null, last: 0};
    current = state;
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === p.name);
    showError("");
    try { await p.render.call(p, el, match); } catch (e) { showError(e.message); }
  }

  function refreshSoon() {
    const state = current;
    if (!state || !state.page.refresh || state.timer) return;
    const wait = Math.max(0, (state.page.throttle || 500) - (Date.now() - state.last));
    state.timer = setTimeout(async () => {
      state.timer = null;
      state.last = Date.now();
      if (current !== state) return;
      try { await state.page.refresh.call(state.page); showError(""); } catch (e) { showError(e.message); }
    }, wait);
  }

  // -- the live stream ----------------------------------------------------------------
  function connect() {
    if (source) source.close();
    if (auth.enabled && !token()) return;
    const query = token() ? "?access_token=" + encodeURIComponent(token()) : "";
    source = new EventSource("/ui/events" + query);
    const live = document.getElementById("live");
    source.addEventListener("hello", () => {
      live.textContent = "live"; live.className = "live on";
      refreshSoon();  // connected (again): whatever happened meanwhile is in the views
    });
    source.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
    source.onmessage = message => {
      for (const event of JSON.parse(message.data)) dispatch(event);
    };
  }

  function dispatch(event) {
    for (const listener of listeners) listener(event);
    if (!current) return;
    if (event.type === "missed") { refreshSoon(); return; }
    const handler = current.page.event;
    if (handler) handler.call(current.page, event);
    else refreshSoon();
  }

  /* Every live event, whatever the page (the event feed keeps them). */
  function listen(listener) { listeners.add(listener); }

  // -- tokens ----------------------------------------------------------------------------
  async function loadAuth() {
    try { auth = await api("/auth"); } catch (e) { auth = {enabled: true, roles: []}; }
    const form = document.getElementById("token-form");
    const button = document.getElementById("token-button");
    button.hidden = !auth.enabled;
    form.hidden = !auth.enabled || auth.roles.length > 0;
  }

  async function start() {
    const nav = document.getElementById("nav");
    const order = p => p.order === undefined ? 100 : p.order;
    for (const p of pages.filter(p => p.nav).sort((a, b) => order(a) - order(b))) {
      nav.append(h("a", {href: "#" + (p.href || "/" + p.name), dataset: {page: p.name}}, p.nav));
    }
    document.getElementById("token-form").addEventListener("submit", async e => {
      e.preventDefault();
      localStorage.setItem("workyard.token", document.getElementById("token-input").value.trim());
      await loadAuth();
      connect();
      show();
    });
    document.getElementById("token-button").addEventListener("click", () => {
      document.getElementById("token-form").hidden = false;
    });
    await loadAuth();
    window.addEventListener("hashchange", show);
    connect();
    show();
  }

  return {api, can, h, fmtNumber, fmtSeconds, fmtTime, fmtAgo, badge, bar, sub, link, taskLink,
          workerLink, queueLink, table, chart, page, refreshSoon, listen, showError, start,
          get auth() { return auth; }};
})();
