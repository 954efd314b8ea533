/* One task: its state, every attempt with worker and outcome, payload and result. */
"use strict";
Dash.page({
  name: "task", route: /^\/task\/(.+)$/,
  async render(el, match) { this.id = match[1]; this.el = el; await this.refresh(); },
  event(ev) { if (ev.task === this.id) Dash.refreshSoon(); },
  async refresh() {
    const t = await Dash.api("/tasks/" + encodeURIComponent(this.id));
    const {h} = Dash;
    const final = ["done", "failed", "cancelled"].includes(t.state);
    const json = value => h("pre", {}, value === null || value === undefined ? "null" : JSON.stringify(value, null, 2));
    this.el.replaceChildren(
      h("h1", {}, "Task ", h("code", {}, t.id), " ", h("span", {id: "task-state"}, Dash.badge(t.state))),
      h("div", {class: "grid"},
        h("section", {class: "card"}, h("h2", {}, "Task"),
          h("dl", {class: "fields"},
            h("dt", {}, "queue"), h("dd", {}, Dash.queueLink(t.name)),
            h("dt", {}, "attrs"), h("dd", {}, Object.entries(t.attrs).map(([k, v]) => h("span", {class: "sub"}, `${k}=${v}`))),
            h("dt", {}, "priority"), h("dd", {}, t.priority),
            h("dt", {}, "timeout / retries"), h("dd", {}, `${Dash.fmtSeconds(t.timeout)} / ${t.retries}`),
            h("dt", {}, "created"), h("dd", {}, Dash.fmtTime(t.created)),
            h("dt", {}, "finished"), h("dd", {}, Dash.fmtTime(t.finished)),
            t.key ? [h("dt", {}, "key"), h("dd", {}, t.key)] : null,
            t.error ? [h("dt", {}, "error"), h("dd", {class: "failed"}, t.error)] : null),
          !final && Dash.can("producer") ? h("p", {}, h("button", {class: "danger", id: "cancel",
            onclick: () => this.cancel()}, "Cancel task")) : null),
        h("section", {class: "card"}, h("h2", {}, "Attempts"),
          Dash.table([
            {title: "#", num: true, cell: a => a.n},
            {title: "worker", cell: a => Dash.workerLink(a.worker)},
            {title: "started", cell: a => Dash.fmtTime(a.started)},
            {title: "took", num: true, cell: a => a.ended ? Dash.fmtSeconds(a.ended - a.started) : "…"},
            {title: "outcome", cell: a => a.outcome ? Dash.badge(a.outcome) : Dash.badge("running")},
          ], t.attempts.map((a, i) => ({value: Object.assign({n: i + 1}, a), attrs: {class: "attempt"}})),
          {empty: "not dispatched yet"}))),
      h("div", {class: "grid"},
        h("section", {class: "card"}, h("h2", {}, "Payload"), json(t.data)),
        h("section", {class: "card"}, h("h2", {}, "Result"), h("div", {id: "task-result"}, json(t.result)))));
  },
  async cancel() {
    try { await Dash.api("/tasks/" + encodeURIComponent(this.id), {method: "DELETE"}); await this.refresh(); }
    catch (e) { Dash.showError(e.message); }
  },
});
