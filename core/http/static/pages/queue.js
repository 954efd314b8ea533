/* One queue: backlog, throughput and latency over ten minutes; spread over its workers. */
"use strict";
Dash.page({
  name: "queue", route: /^\/queue\/(.+)$/, throttle: 1000,
  async render(el, match) {
    this.name = match[1];
    const {h} = Dash;
    this.parts = {
      head: h("div"), backlog: h("div", {class: "chart"}), rate: h("div", {class: "chart"}),
      latency: h("div", {class: "chart"}), spread: h("div"),
    };
    el.replaceChildren(
      h("h1", {}, "Queue ", h("span", {id: "queue-name"}, this.name)), this.parts.head,
      h("div", {class: "grid"},
        h("section", {class: "card"}, h("h2", {}, "Backlog"), this.parts.backlog),
        h("section", {class: "card"}, h("h2", {}, "Throughput"), this.parts.rate),
        h("section", {class: "card"}, h("h2", {}, "Latency"), this.parts.latency),
        h("section", {class: "card", id: "spread"}, h("h2", {}, "Spread across workers"), this.parts.spread)));
    await this.refresh();
    this.timer = setInterval(() => { if (document.body.contains(el)) Dash.refreshSoon(); else clearInterval(this.timer); }, 2000);
  },
  event(ev) { if (!ev.name || ev.name === this.name || ev.type.startsWith("worker.")) Dash.refreshSoon(); },
  async refresh() {
    const q = await Dash.api("/stats/queues/" + encodeURIComponent(this.name));
    const {h} = Dash, s = q.summary;
    const stat = (label, value) => h("div", {class: "stat"}, h("b", {}, value), h("span", {}, label));
    this.parts.head.replaceChildren(h("div", {class: "stats"},
      stat("queued", q.view.queued), stat("running", q.view.running), stat("workers", q.view.workers),
      stat("done", q.view.processed), stat("failed", q.view.failed),
      stat("done / s", Dash.fmtNumber(s.done_rate)),
      stat("dispatch p50 / p99", `${Dash.fmtSeconds(s.dispatch_p50)} / ${Dash.fmtSeconds(s.dispatch_p99)}`),
      stat("end-to-end p50 / p99", `${Dash.fmtSeconds(s.end_to_end_p50)} / ${Dash.fmtSeconds(s.end_to_end_p99)}`),
      stat("Jain's index", h("span", {id: "fairness"}, Dash.fmtNumber(s.fairness, 3))),
      stat("reschedules", Object.entries(s.reschedules).map(([k, v]) => `${k} ${v}`).join(", ") || "0")));
    const col = i => q.series.map(p => p[i]);
    const xs = col(0);
    Dash.chart(this.parts.backlog, "", [{label: "queued", stroke: "#d98b1c"}, {label: "running", stroke: "#2f6fde"}],
      [xs, col(1), col(2)]);
    Dash.chart(this.parts.rate, "", [{label: "done/s", stroke: "#1f9d55"}, {label: "failed/s", stroke: "#d64545"}],
      [xs, col(3), col(4)]);
    Dash.chart(this.parts.latency, "", [
      {label: "dispatch p50", stroke: "#7aa5ef"}, {label: "dispatch p99", stroke: "#2f6fde"},
      {label: "end-to-end p50", stroke: "#a3d9b8"}, {label: "end-to-end p99", stroke: "#1f9d55"}],
      [xs, col(5), col(6), col(7), col(8)], {seconds: true});
    const most = Math.max(1, ...q.spread.map(x => x.dispatched));
    this.parts.spread.replaceChildren(Dash.table([
      {title: "worker", cell: x => Dash.workerLink(x.worker)},
      {title: "dispatched", cell: x => Dash.bar(x.dispatched, most, x.dispatched)},
      {title: "outstanding", num: true, cell: x => x.outstanding},
    ], q.spread.map(x => ({value: x, attrs: {dataset: {worker: x.worker}}})), {empty: "no worker subscribed"}));
  },
});
