/* Task search: by queue and state, newest first, or straight to an id. */
"use strict";
Dash.page({
  name: "tasks", route: /^\/tasks(?:\?(.*))?$/, nav: "Tasks", order: 10, throttle: 1000,
  async render(el, match) {
    const {h} = Dash;
    this.params = new URLSearchParams(match[1] || "");
    this.results = h("div");
    const field = (name, placeholder) => h("input", {name, placeholder, value: this.params.get(name) || ""});
    const state = h("select", {name: "state"}, ["", "queued", "running", "done", "failed", "cancelled"]
      .map(s => h("option", {value: s, selected: s === (this.params.get("state") || "")}, s || "any state")));
    const form = h("form", {class: "search", id: "task-search", onsubmit: e => {
      e.preventDefault();
      const data = new FormData(form);
      if (data.get("id")) { location.hash = "#/task/" + encodeURIComponent(data.get("id").trim()); return; }
      const query = new URLSearchParams();
      for (const key of ["name", "state", "limit"]) if (data.get(key)) query.set(key, data.get(key));
      location.hash = "#/tasks?" + query;
    }}, field("name", "queue (task name)"), state, field("limit", "limit (100)"), h("button", {type: "submit"}, "Search"),
      h("span", {class: "muted"}, "or"), field("id", "task id"));
    el.replaceChildren(h("h1", {}, "Tasks"), form, h("section", {class: "card"}, this.results));
    await this.refresh();
  },
  async refresh() {
    const query = new URLSearchParams();
    for (const key of ["name", "state", "limit"]) if (this.params.get(key)) query.set(key, this.params.get(key));
    const found = await Dash.api("/tasks?" + query);
    this.results.replaceChildren(Dash.table([
      {title: "task", cell: t => Dash.taskLink(t.id)},
      {title: "queue", cell: t => Dash.queueLink(t.name)},
      {title: "state", cell: t => Dash.badge(t.state)},
      {title: "worker", cell: t => Dash.workerLink(t.attempts.length ? t.attempts[t.attempts.length - 1].worker : null)},
      {title: "attempts", num: true, cell: t => t.attempts.length},
      {title: "created", cell: t => Dash.fmtTime(t.created)},
    ], found.tasks.map(t => ({value: t, attrs: {dataset: {task: t.id}}})), {empty: "no task matches"}));
  },
});
