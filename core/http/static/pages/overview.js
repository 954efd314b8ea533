/* The fleet at a glance: workers by transport with their load, queues with rates. */
"use strict";
Dash.page({
  name: "overview", route: /^\/$/, nav: "Fleet", href: "/", order: 0,
  async render(el) { this.el = el; await this.refresh(); },
  async refresh() {
    const [workers, queues, stats, health] = await Promise.all([
      Dash.api("/workers"), Dash.api("/queues"), Dash.api("/stats/queues"), Dash.api("/health")]);
    const {h} = Dash;
    const names = Object.keys(queues.queues);
    const totals = names.reduce((t, n) => {
      const q = queues.queues[n], s = stats.queues[n] || {};
      t.queued += q.queued; t.running += q.running; t.rate += s.done_rate || 0; return t;
    }, {queued: 0, running: 0, rate: 0});
    const byTransport = {};
    for (const w of workers.workers) (byTransport[w.transport] = byTransport[w.transport] || []).push(w);
    const admin = Dash.can("admin");

    this.el.replaceChildren(
      h("div", {class: "stats"},
        stat("workers", workers.workers.length, "stat-workers"),
        stat("queued", totals.queued, "stat-queued"),
        stat("running", totals.running, "stat-running"),
        stat("done / s", Dash.fmtNumber(totals.rate), "stat-rate"),
        stat("unfinished", health.unfinished, "stat-unfinished")),
      h("div", {},
        h("section", {class: "card", id: "workers"},
          h("h2", {}, "Workers"),
          Object.keys(byTransport).length ? Object.entries(byTransport).sort().map(([transport, list]) => [
            h("h3", {class: "muted"}, `${transport} · ${list.length}`),
            Dash.table([
              {title: "worker", cell: w => Dash.workerLink(w.id)},
              {title: "pool", cell: w => w.pool || "–"},
              {title: "subscriptions", cell: w => w.subscriptions.map(Dash.sub)},
              {title: "outstanding", cell: w => Dash.bar(w.outstanding, w.capacity)},
              {title: "done", num: true, cell: w => w.processed},
              {title: "failed", num: true, cell: w => w.failed},
              {title: "lost", num: true, cell: w => w.lost},
              {title: "since", cell: w => Dash.fmtAgo(w.connected_since)},
              admin ? {title: "", cell: w => h("button", {class: "small danger", dataset: {detach: w.id},
                onclick: () => detach(w.id)}, "detach")} : null,
            ].filter(Boolean), list.map(w => ({value: w, attrs: {dataset: {worker: w.id}}})))]) :
            h("div", {class: "empty"}, "No worker attached. Start one: workyard worker --task NAME")),
        h("section", {class: "card", id: "queues"},
          h("h2", {}, "Queues"),
          Dash.table([
            {title: "queue", cell: n => Dash.queueLink(n)},
            {title: "queued", num: true, cell: n => h("span", {class: "queued"}, queues.queues[n].queued)},
            {title: "running", num: true, cell: n => h("span", {class: "running"}, queues.queues[n].running)},
            {title: "workers", num: true, cell: n => queues.queues[n].workers},
            {title: "done", num: true, cell: n => h("span", {class: "processed"}, queues.queues[n].processed)},
            {title: "failed", num: true, cell: n => queues.queues[n].failed},
            {title: "done/s", num: true, cell: n => Dash.fmtNumber((stats.queues[n] || {}).done_rate)},
            {title: "dispatch p50", num: true, cell: n => Dash.fmtSeconds((stats.queues[n] || {}).dispatch_p50)},
            {title: "end-to-end p50", num: true, cell: n => Dash.fmtSeconds((stats.queues[n] || {}).end_to_end_p50)},
            {title: "fairness", num: true, cell: n => Dash.fmtNumber((stats.queues[n] || {}).fairness, 2)},
          ], names.map(n => ({value: n, attrs: {dataset: {queue: n}}})),
          {empty: "No queue yet: submit a task (workyard submit NAME)"}))));

    function stat(label, value, id) { return h("div", {class: "stat", id}, h("b", {}, value), h("span", {}, label)); }
    async function detach(id) {
      try { await Dash.api("/workers/" + encodeURIComponent(id), {method: "DELETE"}); Dash.refreshSoon(); }
      catch (e) { Dash.showError(e.message); }
    }
  },
});
