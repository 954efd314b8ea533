/* The live event feed: what the hub did, newest first. */
"use strict";
(() => {
  const kept = [];
  const KEEP = 500;
  Dash.listen(ev => { if (ev.type !== "missed") { kept.push(ev); if (kept.length > KEEP) kept.shift(); } });
  Dash.page({
    name: "events", route: /^\/events$/, nav: "Events", order: 20, throttle: 300,
    async render(el) {
      const recent = await Dash.api("/events/recent?limit=500");
      const seen = new Set(kept.map(e => e.seq));
      for (const ev of recent.events) if (!seen.has(ev.seq)) kept.push(ev);
      kept.sort((a, b) => a.seq - b.seq);
      this.body = Dash.h("div");
      el.replaceChildren(Dash.h("h1", {}, "Events"), Dash.h("section", {class: "card", id: "feed"}, this.body));
      this.refresh();
    },
    event() { Dash.refreshSoon(); },
    refresh() {
      const {h} = Dash;
      const describe = ev => {
        switch (ev.type) {
          case "task.submitted": return ["task ", Dash.taskLink(ev.task), " on ", Dash.queueLink(ev.name)];
          case "task.dispatched": return ["task ", Dash.taskLink(ev.task), " → ", Dash.workerLink(ev.worker), ` (attempt ${ev.attempt})`];
          case "task.requeued": return ["task ", Dash.taskLink(ev.task), " back from ", Dash.workerLink(ev.worker), `: ${ev.reason}`];
          case "task.finished": return ["task ", Dash.taskLink(ev.task), " ", Dash.badge(ev.state), ev.error ? " " + ev.error : ""];
          case "task.cancelled": return ["task ", Dash.taskLink(ev.task), " cancelled"];
          case "worker.attached": return ["worker ", Dash.workerLink(ev.worker), ` (${ev.transport}) `, ev.subscriptions.map(Dash.sub)];
          case "worker.detached": return ["worker ", Dash.workerLink(ev.worker), `: ${ev.reason}; ${ev.requeued} rescheduled`];
          case "worker.capacity_changed": return ["worker ", Dash.workerLink(ev.worker), ` capacity ${ev.capacity}`];
          default: return [JSON.stringify(ev)];
        }
      };
      this.body.replaceChildren(Dash.table([
        {title: "#", num: true, cell: e => e.seq},
        {title: "time", cell: e => Dash.fmtTime(e.at)},
        {title: "event", cell: e => h("span", {class: "ev-type"}, e.type)},
        {title: "", cell: describe},
      ], kept.slice().reverse().slice(0, 200).map(e => ({value: e, attrs: {dataset: {type: e.type}}})),
      {empty: "nothing happened yet"}));
    },
  });
})();
