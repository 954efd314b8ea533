/* One worker: what it takes, what it runs now, and its last attempts. */
"use strict";
Dash.page({
  name: "worker", route: /^\/worker\/(.+)$/,
  async render(el, match) { this.id = match[1]; this.el = el; await this.refresh(); },
  event(ev) { if (ev.worker === this.id) Dash.refreshSoon(); },
  async refresh() {
    const w = await Dash.api("/workers/" + encodeURIComponent(this.id));
    const {h} = Dash, v = w.view;
    this.el.replaceChildren(
      h("h1", {}, "Worker ", w.id, " ", v ? h("span", {class: "badge running", id: "worker-state"}, "attached")
        : h("span", {class: "badge cancelled", id: "worker-state"}, "detached")),
      h("div", {class: "grid"},
        h("section", {class: "card"}, h("h2", {}, "Now"),
          v ? h("dl", {class: "fields"},
            h("dt", {}, "transport"), h("dd", {}, v.transport),
            h("dt", {}, "subscriptions"), h("dd", {}, v.subscriptions.map(Dash.sub)),
            h("dt", {}, "outstanding"), h("dd", {}, Dash.bar(v.outstanding, v.capacity)),
            h("dt", {}, "done / failed / lost"), h("dd", {}, `${v.processed} / ${v.failed} / ${v.lost}`),
            h("dt", {}, "connected"), h("dd", {}, Dash.fmtAgo(v.connected_since)),
            h("dt", {}, "first seen"), h("dd", {}, Dash.fmtAgo(v.since))) : h("div", {class: "empty"}, "not attached"),
          v && Dash.can("admin") ? h("p", {}, h("button", {class: "danger", id: "detach", onclick: () => this.detach()},
            "Detach (its tasks are rescheduled)")) : null),
        h("section", {class: "card"}, h("h2", {}, "Current tasks"),
          Dash.table([{title: "task", cell: id => Dash.taskLink(id)}], w.current, {empty: "idle"}))),
      h("section", {class: "card", id: "history"}, h("h2", {}, "History"),
        Dash.table([
          {title: "task", cell: e => Dash.taskLink(e.task)},
          {title: "queue", cell: e => Dash.queueLink(e.name)},
          {title: "started", cell: e => Dash.fmtTime(e.started)},
          {title: "took", num: true, cell: e => e.ended ? Dash.fmtSeconds(e.ended - e.started) : "…"},
          {title: "outcome", cell: e => e.outcome ? Dash.badge(e.outcome) : Dash.badge("running")},
        ], w.history.slice().reverse().map(e => ({value: e, attrs: {dataset: {task: e.task}}})),
        {empty: "no attempt seen yet"})));
  },
  async detach() {
    try { await Dash.api("/workers/" + encodeURIComponent(this.id), {method: "DELETE"}); Dash.refreshSoon(); }
    catch (e) { Dash.showError(e.message); }
  },
});
