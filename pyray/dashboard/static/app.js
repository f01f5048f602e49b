// The pyray dashboard's page: views switched by the URL's hash, each
// refreshed every POLL_MS while it is shown.  Data comes from the
// dashboard's REST API; an endpoint that is not there is a panel saying so.
"use strict";

const POLL_MS = 2000;
const $ = (sel, root) => (root || document).querySelector(sel);

// ------------------------------------------------------------ helpers
function esc(v) {
  return String(v === null || v === undefined ? "" : v)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}
function fmtBytes(n) {
  if (n === null || n === undefined || isNaN(n)) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : 1) : n) + " " + u[i];
}
function fmtNum(n) {
  if (n === null || n === undefined) return "–";
  return Number.isInteger(n) ? n.toLocaleString("en") : (+n).toFixed(2);
}
function fmtTime(ms) {
  if (!ms) return "–";
  const d = new Date(ms);
  return d.toLocaleDateString("en-CA") + " " + d.toTimeString().slice(0, 8);
}
function fmtDur(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return "–";
  if (ms < 1000) return ms.toFixed(0) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  if (ms < 3600000) return (ms / 60000).toFixed(1) + " min";
  return (ms / 3600000).toFixed(1) + " h";
}
function shortId(id) {
  return id ? `<span class="mono" title="${esc(id)}">${esc(String(id).slice(0, 10))}…</span>` : "–";
}
function badge(s) { return s ? `<span class="badge ${esc(s)}">${esc(s)}</span>` : "–"; }
// a use bar; `share` bars (parts of a whole) are not coloured by level
function bar(used, total, label, share) {
  if (!total) return `<span class="muted">–</span>`;
  const f = Math.max(0, Math.min(1, used / total));
  const cls = share ? "" : f > 0.9 ? "full" : f > 0.7 ? "hot" : "";
  return `<div class="bar"><i class="${cls}" style="width:${(f * 100).toFixed(1)}%"></i>` +
    `<span>${esc(label || "")} ${(f * 100).toFixed(0)}%</span></div>`;
}
function colorOf(name) {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return `hsl(${h % 360}, 62%, ${48 + (h >> 9) % 12}%)`;
}
// a table: cols = [[header, row => cell html, "num"?]]
function table(cols, rows, empty) {
  if (!rows.length) return `<div class="muted">${esc(empty || "none")}</div>`;
  const head = cols.map(c => `<th class="${c[2] || ""}">${esc(c[0])}</th>`).join("");
  const body = rows.map(r => "<tr>" + cols.map(c => `<td class="${c[2] || ""}">${c[1](r)}</td>`)
    .join("") + "</tr>").join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}
function unavailable(res, what) {
  if (res && res.status === 401)
    return `<div class="unavailable">${esc(what)} needs the cluster token: <a href="/login">log in</a>.</div>`;
  if (res && res.status === 404)
    return `<div class="unavailable">${esc(what)}: not available on this dashboard (the endpoint ` +
      `<code>${esc(res.path)}</code> is not served).</div>`;
  return `<div class="unavailable">${esc(what)}: could not be read (${esc(res ? res.error : "no answer")}).</div>`;
}
function panel(title, html, extra) {
  return `<section class="panel" ${extra || ""}>${title ? `<h2>${esc(title)}</h2>` : ""}${html}</section>`;
}

// GET a JSON endpoint: {ok, status, data, path, error}; never throws
async function api(path) {
  try {
    const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (r.status === 401) needLogin(true);
    if (!r.ok) {
      let detail = "";
      try { detail = (await r.json()).detail || ""; } catch (e) { /* not JSON */ }
      return { ok: false, status: r.status, path, error: `HTTP ${r.status} ${detail}` };
    }
    return { ok: true, status: r.status, path, data: await r.json() };
  } catch (e) {
    return { ok: false, status: 0, path, error: String(e) };
  }
}
// a state API list (/api/v0/<resource>): {ok, rows, total, ...}
function stateQuery(resource, opts) {
  opts = opts || {};
  const q = new URLSearchParams();
  q.set("limit", opts.limit || 100);
  if (opts.detail) q.set("detail", "true");
  for (const [k, p, v] of opts.filters || []) {
    q.append("filter_keys", k); q.append("filter_predicates", p); q.append("filter_values", v);
  }
  return api(`/api/v0/${resource}?${q}`).then(res => {
    if (!res.ok) return res;
    const d = res.data;
    if (d.result === false) return { ok: false, status: 500, path: res.path, error: d.msg };
    const inner = (d.data && d.data.result) || {};
    res.rows = inner.result || [];
    res.total = inner.total;
    res.num_filtered = inner.num_filtered;
    res.num_after_truncation = inner.num_after_truncation;
    return res;
  });
}
function stateSummary(resource) {
  return api(`/api/v0/${resource}/summarize`).then(res => {
    if (!res.ok) return res;
    const d = res.data;
    if (d.result === false) return { ok: false, status: 500, path: res.path, error: d.msg };
    // Ray's shape: data.result.result.node_id_to_summary.cluster (older
    // versions drop a level or two; all are read)
    let r = (d.data && d.data.result) || {};
    if (r.result && typeof r.result === "object") r = r.result;
    if (r.node_id_to_summary) r = r.node_id_to_summary;
    res.summary = r.cluster || {};
    return res;
  });
}
let loginShown = false;
function needLogin(on) {
  if (on && !loginShown) {
    loginShown = true;
    const b = $("#banner");
    b.innerHTML = `Some of this page needs the cluster token (the one <code>pyray start --head</code> printed): <a href="/login">log in</a>.`;
    b.hidden = false;
  }
}

// ------------------------------------------------------------- charts
const DPR = () => window.devicePixelRatio || 1;
function prepCanvas(canvas, height) {
  const w = canvas.clientWidth || canvas.parentNode.clientWidth || 600;
  canvas.style.height = height + "px";
  canvas.width = Math.round(w * DPR());
  canvas.height = Math.round(height * DPR());
  const g = canvas.getContext("2d");
  g.setTransform(DPR(), 0, 0, DPR(), 0, 0);
  g.clearRect(0, 0, w, height);
  return [g, w, height];
}
// series: [{name, color, points: [[t seconds, value]]}]; opts: {t0, t1, ymax, fmt}
function lineChart(canvas, series, opts) {
  const [g, w, h] = prepCanvas(canvas, opts.height || 190);
  const L = 62, R = 22, T = 10, B = 24;
  const t1 = opts.t1, t0 = opts.t0;
  let ymax = opts.ymax || 0;
  for (const s of series) for (const p of s.points) if (p[1] > ymax) ymax = p[1];
  if (!ymax) ymax = 1;
  ymax *= 1.05;
  const X = t => L + (t - t0) / (t1 - t0) * (w - L - R);
  const Y = v => T + (1 - v / ymax) * (h - T - B);
  g.font = "11px system-ui, sans-serif";
  g.strokeStyle = "#e6e9ef"; g.fillStyle = "#6b7385"; g.lineWidth = 1;
  g.textAlign = "right"; g.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const v = ymax * i / 4, y = Math.round(Y(v)) + 0.5;
    g.beginPath(); g.moveTo(L, y); g.lineTo(w - R, y); g.stroke();
    g.fillText((opts.fmt || fmtNum)(v), L - 6, y);
  }
  g.textAlign = "center"; g.textBaseline = "top";
  const ticks = Math.max(2, Math.min(6, Math.floor((w - L - R) / 75)));
  for (let i = 0; i <= ticks; i++) {
    const t = t0 + (t1 - t0) * i / ticks;
    g.fillText(new Date(t * 1000).toTimeString().slice(0, t1 - t0 < 900 ? 8 : 5), X(t), h - B + 6);
  }
  for (const s of series) {
    g.strokeStyle = s.color; g.lineWidth = 1.8; g.beginPath();
    let started = false;
    for (const [t, v] of s.points) {
      if (v === null || v === undefined) { started = false; continue; }
      const x = X(t), y = Y(v);
      if (!started) { g.moveTo(x, y); started = true; } else g.lineTo(x, y);
    }
    g.stroke();
  }
  if (!series.some(s => s.points.length)) {
    g.fillStyle = "#9aa3b5"; g.textAlign = "center"; g.textBaseline = "middle";
    g.fillText("no samples yet (one every few seconds)", w / 2, h / 2);
  }
}
function legend(series) {
  return `<div class="legend">${series.map(s => `<span><i style="background:${s.color}"></i>${esc(s.name)}</span>`).join("")}</div>`;
}

// the charts' time axis: the last hour, or since the first sample (at
// least five minutes) while the history is shorter
function chartWindow() {
  const t1 = Date.now() / 1000;
  const first = history.samples.length ? history.samples[0].t : t1;
  return [Math.max(t1 - 3600, Math.min(first, t1 - 300)), t1];
}

// --------------------------------------------------- metrics history
// kept across views; fetched incrementally (since the last sample)
const history = { samples: [], interval: 5, last: 0 };
async function loadHistory() {
  const res = await api(`/api/ui/metrics_history?since=${history.last}`);
  if (!res.ok) return res;
  history.interval = res.data.interval_s;
  for (const s of res.data.samples) history.samples.push(s);
  if (history.samples.length) history.last = history.samples[history.samples.length - 1].t;
  const cut = Date.now() / 1000 - res.data.window_s;
  while (history.samples.length && history.samples[0].t < cut) history.samples.shift();
  return res;
}

// ----------------------------------------------------------------- views
const views = {};
let tick = 0;   // polls of the current view

// a node's custom resources (not the standard ones, its node: marker or
// the placement groups' bundle resources)
function otherResources(n) {
  return Object.keys(n.Resources).filter(k => !["CPU", "GPU", "memory", "object_store_memory"].includes(k) &&
    !k.startsWith("node:") && !/_group_/.test(k)).map(k => `${k}: ${fmtNum(n.Resources[k])}`).join(", ");
}

views.overview = {
  title: "Cluster overview",
  async render(el) {
    const [status, hist, running, actors, objects] = await Promise.all([
      api("/api/cluster_status"), loadHistory(),
      stateQuery("tasks", { limit: 10000, detail: true, filters: [["state", "=", "RUNNING"]] }),
      stateQuery("actors", { limit: 10000, detail: true, filters: [["state", "=", "ALIVE"]] }),
      stateQuery("objects", { limit: 10000 })]);
    if (!status.ok) { el.innerHTML = panel("Nodes", unavailable(status, "The cluster status")); return; }
    const d = status.data.data, tot = d.cluster_resources, av = d.available_resources;
    const last = history.samples[history.samples.length - 1];
    const perNode = (res, key) => {
      const m = {};
      if (res.ok) for (const r of res.rows) if (r.type !== "DRIVER_TASK") m[r[key]] = (m[r[key]] || 0) + 1;
      return m;
    };
    const runningBy = perNode(running, "node_id"), actorsBy = perNode(actors, "node_id");
    // logical resources in use per node: what its running tasks and alive
    // actors hold (an actor's own tasks run on what the actor holds)
    const heldBy = {};
    const hold = (node, req) => {
      const h = heldBy[node] || (heldBy[node] = {});
      for (const [k, v] of Object.entries(req || {})) h[k] = (h[k] || 0) + v;
    };
    if (running.ok) for (const t of running.rows) if (t.type === "NORMAL_TASK") hold(t.node_id, t.required_resources);
    if (actors.ok) for (const a of actors.rows) hold(a.node_id, a.required_resources);
    // one node: the cluster's use is its use (exact); several: the sums
    const alone = d.nodes.filter(n => n.Alive).length === 1;
    const nodeUse = (n, k, fmt) => {
      const total = n.Resources[k] || 0;
      if (!total || !(alone || (running.ok && actors.ok))) return esc(fmt(total));
      const used = alone ? total - (av[k] || 0) : (heldBy[n.NodeID] || {})[k] || 0;
      return bar(used, total, `${fmt(used)} / ${fmt(total)}`);
    };
    const storeBy = {};
    if (objects.ok) for (const o of objects.rows) storeBy[o.node_id] = (storeBy[o.node_id] || 0) + (o.object_size || 0);
    const use = k => tot[k] ? bar(tot[k] - (av[k] || 0), tot[k], k === "memory" || k === "object_store_memory"
      ? `${fmtBytes(tot[k] - (av[k] || 0))} / ${fmtBytes(tot[k])}` : `${fmtNum(tot[k] - (av[k] || 0))} / ${fmtNum(tot[k])}`) : `<span class="muted">none</span>`;
    const storeUsed = last && last.object_store_used !== null ? last.object_store_used
      : objects.ok ? Object.values(storeBy).reduce((a, b) => a + b, 0) : null;
    let html = `<div class="cards">
      <div class="card"><div class="v">${d.num_alive_nodes}</div><div class="k">alive nodes</div></div>
      <div class="card"><div class="v">${fmtNum(tot.CPU || 0)}</div><div class="k">CPUs</div></div>
      <div class="card"><div class="v">${fmtNum(tot.GPU || 0)}</div><div class="k">GPUs</div></div>
      <div class="card"><div class="v">${running.ok ? fmtNum(Object.values(runningBy).reduce((a, b) => a + b, 0)) : "–"}</div><div class="k">running tasks</div></div>
      <div class="card"><div class="v">${actors.ok ? fmtNum(actors.rows.length) : "–"}</div><div class="k">alive actors</div></div>
      <div class="card"><div class="v">${last ? last.host_cpu_percent.toFixed(0) + "%" : "–"}</div><div class="k">head machine CPU</div></div>
    </div>`;
    html += `<div class="grid">` +
      panel("CPU in use (logical)", use("CPU")) + panel("GPU in use (logical)", use("GPU")) +
      panel("Memory reserved (logical)", use("memory")) +
      panel("Object store", tot.object_store_memory && storeUsed !== null
        ? bar(storeUsed, tot.object_store_memory, `${fmtBytes(storeUsed)} / ${fmtBytes(tot.object_store_memory)}`)
        : use("object_store_memory")) +
      panel("Head machine memory", last ? bar(last.host_memory[0], last.host_memory[1],
        `${fmtBytes(last.host_memory[0])} / ${fmtBytes(last.host_memory[1])}`) : `<span class="muted">no sample yet</span>`) +
      `</div>`;
    const nodes = d.nodes.slice().sort((a, b) => (b.IsHead - a.IsHead) || (b.Alive - a.Alive));
    html += panel(`Nodes (${nodes.length})`, table([
      ["node id", n => `<span class="mono">${esc(n.NodeID)}</span>${n.IsHead ? ' <span class="badge">head</span>' : ""}`],
      ["state", n => badge(n.Alive ? "ALIVE" : "DEAD")],
      ["address", n => esc(n.NodeManagerAddress)],
      ["CPU (logical)", n => nodeUse(n, "CPU", fmtNum)],
      ["GPU (logical)", n => nodeUse(n, "GPU", fmtNum)],
      ["memory (logical)", n => nodeUse(n, "memory", fmtBytes)],
      ["running tasks", n => running.ok ? fmtNum(runningBy[n.NodeID] || 0) : "–", "num"],
      ["alive actors", n => actors.ok ? fmtNum(actorsBy[n.NodeID] || 0) : "–", "num"],
      ["object store (owned here / capacity)", n => objects.ok
        ? bar(storeBy[n.NodeID] || 0, n.Resources.object_store_memory, `${fmtBytes(storeBy[n.NodeID] || 0)} / ${fmtBytes(n.Resources.object_store_memory)}`)
        : fmtBytes(n.Resources.object_store_memory)],
      ...(nodes.some(n => otherResources(n)) ? [["other resources", n => esc(otherResources(n))]] : []),
    ], nodes)) + (running.ok ? "" : panel("", unavailable(running, "Per-node tasks, actors and objects (the state API)")));
    if (history.samples.length) {
      html += `<div class="charts">` + panel("CPU in use, last hour", `<canvas id="ov-cpu"></canvas>`) +
        panel("Object store use, last hour", `<canvas id="ov-store"></canvas>`) + `</div>`;
    }
    el.innerHTML = html;
    if (history.samples.length) {
      const [t0, t1] = chartWindow();
      const pts = f => history.samples.map(s => [s.t, f(s)]);
      lineChart($("#ov-cpu", el), [{ name: "CPU", color: "#2f6fde", points: pts(s => s.resources.CPU ? s.resources.CPU[0] : null) }],
        { t0, t1, ymax: tot.CPU, height: 150 });
      lineChart($("#ov-store", el), [{ name: "store", color: "#1e9e5a", points: pts(s => s.object_store_used) }],
        { t0, t1, ymax: tot.object_store_memory, fmt: fmtBytes, height: 150 });
    }
  },
};

const jobState = { selected: null };
views.jobs = {
  title: "Jobs",
  async render(el) {
    const [jobs, drivers] = await Promise.all([api("/api/jobs/"), stateQuery("jobs", { limit: 1000 })]);
    let html = "";
    if (!jobs.ok) html += panel("Submitted jobs", unavailable(jobs, "The job list"));
    else {
      const rows = jobs.data.slice().sort((a, b) => (b.start_time || 0) - (a.start_time || 0));
      html += panel(`Submitted jobs (${rows.length})`, table([
        ["submission id", j => `<a class="clickable mono" data-job="${esc(j.submission_id)}">${esc(j.submission_id)}</a>`],
        ["status", j => badge(j.status)],
        ["entrypoint", j => `<code>${esc(j.entrypoint)}</code>`],
        ["started", j => esc(fmtTime(j.start_time))],
        ["duration", j => esc(fmtDur(j.start_time ? (j.end_time || Date.now()) - j.start_time : null)), "num"],
        ["message", j => esc(j.message || "")],
      ], rows, "no job was submitted (pyray job submit, JobSubmissionClient)"));
    }
    if (drivers.ok) {
      html += panel(`Drivers (${drivers.rows.length})`, table([
        ["job id", j => `<span class="mono">${esc(j.job_id)}</span>`],
        ["submission id", j => esc(j.submission_id || "–")],
        ["status", j => badge(j.status)],
        ["entrypoint", j => `<code>${esc(j.entrypoint || "")}</code>`],
        ["driver", j => esc(j.driver_info ? `${j.driver_info.node_ip_address || ""} pid ${j.driver_info.pid || ""}` : "")],
        ["started", j => esc(fmtTime(j.start_time))],
      ], drivers.rows));
    } else html += panel("Drivers", unavailable(drivers, "The drivers list (state API)"));
    if (jobState.selected) {
      const logs = await api(`/api/jobs/${encodeURIComponent(jobState.selected)}/logs`);
      html += panel(`Logs of ${jobState.selected}`, logs.ok
        ? `<pre class="logtext" style="height:300px">${esc((logs.data.logs || "").slice(-200000))}</pre>` : unavailable(logs, "The job's logs"));
    }
    el.innerHTML = html;
    el.querySelectorAll("[data-job]").forEach(a => a.onclick = () => { jobState.selected = a.dataset.job; refresh(); });
  },
};

const actorState = { filter: "" };
views.actors = {
  title: "Actors",
  async render(el) {
    const res = await stateQuery("actors", { limit: 10000, detail: true });
    if (!res.ok) { el.innerHTML = panel("Actors", unavailable(res, "The actor list (state API)")); return; }
    const pids = [...new Set(res.rows.filter(a => a.pid && a.state === "ALIVE").map(a => a.pid))];
    const stats = pids.length ? await api(`/api/ui/process_stats?pids=${pids.slice(0, 2000).join(",")}`) : { ok: false };
    const mem = pid => stats.ok && stats.data.processes[pid] ? fmtBytes(stats.data.processes[pid].rss) : "–";
    const counts = {};
    for (const a of res.rows) counts[a.state] = (counts[a.state] || 0) + 1;
    const f = actorState.filter.toLowerCase();
    const rows = res.rows.filter(a => !f || [a.class_name, a.name, a.state, a.actor_id, a.node_id, String(a.pid)]
      .some(v => v && String(v).toLowerCase().includes(f)));
    rows.sort((a, b) => (a.state === "ALIVE" ? 0 : 1) - (b.state === "ALIVE" ? 0 : 1) || String(a.class_name).localeCompare(b.class_name));
    const shown = rows.slice(0, 500);
    el.innerHTML = `<div class="cards">${Object.entries(counts).map(([s, n]) =>
      `<div class="card"><div class="v">${fmtNum(n)}</div><div class="k">${badge(s)}</div></div>`).join("")}</div>` +
      panel(`Actors (${rows.length}${rows.length > shown.length ? ", first 500 shown" : ""}${res.total > res.rows.length ? ` of ${res.total}` : ""})`,
        `<div class="toolbar"><input type="search" id="actor-filter" placeholder="filter: class, name, state, node, pid" value="${esc(actorState.filter)}" size="40"></div>` +
        table([
          ["actor id", a => shortId(a.actor_id)],
          ["class", a => `<b>${esc(a.class_name)}</b>`],
          ["name", a => esc(a.name || "")],
          ["state", a => badge(a.state)],
          ["node", a => shortId(a.node_id)],
          ["pid", a => esc(a.pid || "–"), "num"],
          ["restarts", a => fmtNum(a.num_restarts || 0), "num"],
          ["memory (RSS)", a => a.state === "ALIVE" ? mem(a.pid) : "–", "num"],
          ["resources", a => esc(a.required_resources ? Object.entries(a.required_resources).map(([k, v]) => `${k}: ${v}`).join(", ") : "")],
          ["death cause", a => a.death_cause ? `<pre class="err">${esc(typeof a.death_cause === "string" ? a.death_cause : JSON.stringify(a.death_cause))}</pre>` : ""],
        ], shown, "no actor"));
    const inp = $("#actor-filter", el);
    inp.oninput = () => { actorState.filter = inp.value; actorState.focus = true; views.actors.render(el); };
    if (actorState.focus) { inp.focus(); inp.setSelectionRange(inp.value.length, inp.value.length); }
    inp.onblur = () => { actorState.focus = false; };
  },
};

// the tasks view: counts (the summary), a limited table, failed tasks and
// a canvas timeline; never all rows every poll
const taskState = { stateFilter: "", funcFilter: "", timelineTick: -99, timelineRes: null, timelineBusy: false };
const TASK_TABLE_LIMIT = 200, TIMELINE_LIMIT = 10000;
views.tasks = {
  title: "Tasks",
  async render(el) {
    const filters = [];
    if (taskState.stateFilter) filters.push(["state", "=", taskState.stateFilter]);
    if (taskState.funcFilter) filters.push(["func_or_class_name", "=", taskState.funcFilter]);
    // the timeline (every 5th poll) is drawn when it comes, not waited for
    if (tick - taskState.timelineTick >= 5 && !taskState.timelineBusy) {
      taskState.timelineBusy = true;
      taskState.timelineTick = tick;
      api(`/api/ui/tasks_timeline?limit=${TIMELINE_LIMIT}`).then(tl => {
        taskState.timelineBusy = false;
        taskState.timelineRes = tl;
        const c = document.getElementById("timeline");
        if (c && current === "tasks") drawTimeline(c, document.getElementById("tl-legend"), tl);
      });
    }
    const [summary, list, failed] = await Promise.all([
      stateSummary("tasks"),
      stateQuery("tasks", { limit: TASK_TABLE_LIMIT, detail: true, filters }),
      stateQuery("tasks", { limit: 50, detail: true, filters: [["state", "=", "FAILED"]] })]);
    if (!summary.ok && !list.ok) { el.innerHTML = panel("Tasks", unavailable(summary, "The task list (state API)")); return; }
    let html = "";
    if (summary.ok) {
      const byState = {};
      const funcs = Object.values(summary.summary.summary || {});
      for (const f of funcs) for (const [s, n] of Object.entries(f.state_counts || {})) byState[s] = (byState[s] || 0) + n;
      html += `<div class="cards"><div class="card clickable" data-state=""><div class="v">${fmtNum(summary.summary.total_tasks || 0)}</div><div class="k">tasks recorded</div></div>` +
        Object.entries(byState).sort().map(([s, n]) => `<div class="card clickable" data-state="${esc(s)}"><div class="v">${fmtNum(n)}</div><div class="k">${badge(s)}</div></div>`).join("") + `</div>`;
      const states = Object.keys(byState).sort();
      funcs.sort((a, b) => sum(b.state_counts) - sum(a.state_counts));
      html += panel(`By function (${funcs.length})`, table([
        ["function / class", f => `<a class="clickable" data-func="${esc(f.func_or_class_name)}"><b>${esc(f.func_or_class_name)}</b></a>`],
        ["type", f => `<span class="muted">${esc(f.type || "")}</span>`],
        ["total", f => fmtNum(sum(f.state_counts)), "num"],
        ...states.map(s => [s, f => f.state_counts[s] ? fmtNum(f.state_counts[s]) : `<span class="muted">0</span>`, "num"]),
      ], funcs.slice(0, 200)));
    } else html += panel("Task counts", unavailable(summary, "The task summary"));
    html += panel("Timeline: which worker ran what, when", `<canvas id="timeline"></canvas><div id="tl-legend"></div>`);
    if (failed.ok) {
      html += panel(`Failed tasks (${fmtNum(failed.num_filtered !== undefined ? failed.num_filtered : failed.rows.length)}${failed.num_filtered > failed.rows.length ? `, ${failed.rows.length} shown` : ""})`, table([
        ["task id", t => shortId(t.task_id)],
        ["function", t => `<b>${esc(t.func_or_class_name || t.name)}</b>`],
        ["node", t => shortId(t.node_id)],
        ["worker pid", t => esc(t.worker_pid || "–"), "num"],
        ["ended", t => esc(fmtTime(t.end_time_ms))],
        ["error", t => `<b>${esc(t.error_type || "")}</b><pre class="err">${esc(t.error_message || "")}</pre>`],
      ], failed.rows, "no failed task"));
    }
    if (list.ok) {
      const flt = [taskState.stateFilter && `state = ${taskState.stateFilter}`, taskState.funcFilter && `function = ${taskState.funcFilter}`].filter(Boolean).join(", ");
      const n = list.num_filtered !== undefined ? list.num_filtered : list.rows.length;
      html += panel(`Tasks${flt ? ` where ${flt}` : ""} (${fmtNum(n)}${n > list.rows.length ? `, ${list.rows.length} shown` : ""})`,
        (flt ? `<div class="toolbar"><button id="clear-filter">show all</button></div>` : "") + table([
          ["task id", t => shortId(t.task_id)],
          ["name", t => esc(t.name)],
          ["state", t => badge(t.state)],
          ["type", t => `<span class="muted">${esc(t.type || "")}</span>`],
          ["node", t => shortId(t.node_id)],
          ["worker", t => shortId(t.worker_id)],
          ["started", t => esc(fmtTime(t.start_time_ms))],
          ["duration", t => t.start_time_ms ? esc(fmtDur((t.end_time_ms || Date.now()) - t.start_time_ms)) : "–", "num"],
          ["error", t => esc(t.error_type || "")],
        ], list.rows, "no task"));
    } else html += panel("Tasks", unavailable(list, "The task list"));
    el.innerHTML = html;
    el.querySelectorAll("[data-state]").forEach(c => c.onclick = () => { taskState.stateFilter = c.dataset.state; refresh(); });
    el.querySelectorAll("[data-func]").forEach(c => c.onclick = () => { taskState.funcFilter = c.dataset.func; refresh(); });
    const clr = $("#clear-filter", el);
    if (clr) clr.onclick = () => { taskState.stateFilter = ""; taskState.funcFilter = ""; refresh(); };
    drawTimeline($("#timeline", el), $("#tl-legend", el), taskState.timelineRes);
  },
};
function sum(o) { return Object.values(o || {}).reduce((a, b) => a + b, 0); }

function drawTimeline(canvas, legendEl, res) {
  if (!res) {
    const [g, w, h] = prepCanvas(canvas, 60);
    g.fillStyle = "#9aa3b5"; g.font = "12px system-ui, sans-serif"; g.textAlign = "center";
    g.fillText("loading the timeline…", w / 2, h / 2);
    return;
  }
  if (!res.ok) {
    canvas.replaceWith(Object.assign(document.createElement("div"), { innerHTML: unavailable(res, "The task timeline") }));
    return;
  }
  const d = res.data;
  const rows = d.workers.length;
  const rowH = rows > 40 ? 10 : 18, L = 176, T = 4, B = 22;
  const [g, w, h] = prepCanvas(canvas, Math.max(60, T + B + rows * rowH));
  // from the first start to the last end (now, while a task runs)
  let last = 1;
  for (const sp of d.spans) if (sp[3] > last) last = sp[3];
  const span = last * 1.02;
  const X = t => L + t / span * (w - L - 10);
  g.font = "11px system-ui, sans-serif"; g.textBaseline = "middle"; g.textAlign = "right";
  let lastNode = null;
  d.workers.forEach(([node, worker], i) => {
    const y = T + i * rowH;
    if (i % 2) { g.fillStyle = "#f7f8fb"; g.fillRect(0, y, w, rowH); }
    g.fillStyle = "#6b7385";
    if (rowH >= 14 || i % 4 === 0)
      g.fillText(`node ${node.slice(0, 6)} · worker ${worker.slice(0, 6)}`, L - 6, y + rowH / 2);
    if (node !== lastNode && i) { g.strokeStyle = "#c9cfdb"; g.beginPath(); g.moveTo(0, y + 0.5); g.lineTo(w, y + 0.5); g.stroke(); }
    lastNode = node;
  });
  const colors = d.names.map(colorOf);
  for (const [wi, ni, s, e, failed] of d.spans) {
    const x0 = X(s), x1 = Math.max(X(e), x0 + 1), y = T + wi * rowH + 2;
    g.fillStyle = failed ? "#d23c3c" : colors[ni];
    g.fillRect(x0, y, x1 - x0, rowH - 4);
  }
  g.fillStyle = "#6b7385"; g.textAlign = "center"; g.textBaseline = "top";
  for (let i = 0; i <= 6; i++) {
    const t = span * i / 6;
    g.fillText("+" + fmtDur(t), X(t), h - B + 6);
  }
  legendEl.innerHTML = `<div class="legend">${d.names.slice(0, 40).map((n, i) => `<span><i style="background:${colors[i]}"></i>${esc(n)}</span>`).join("")}` +
    `<span><i style="background:#d23c3c"></i>failed</span>` +
    `<span class="muted">${fmtNum(d.spans.length)} task runs${d.total > d.num_after_truncation ? ` (${fmtNum(d.num_after_truncation)} of ${fmtNum(d.total)} task records read)` : ""}, since ${esc(fmtTime(d.t0))}</span></div>`;
  // hover: the span under the pointer
  canvas.onmousemove = ev => {
    const r = canvas.getBoundingClientRect(), mx = ev.clientX - r.left, my = ev.clientY - r.top;
    const wi = Math.floor((my - T) / rowH), tt = (mx - L) / (w - L - 10) * span;
    const tip = $("#tooltip");
    let hit = null;
    for (const sp of d.spans) if (sp[0] === wi && sp[2] <= tt + span / w * 2 && sp[3] >= tt - span / w * 2) { hit = sp; break; }
    if (!hit) { tip.hidden = true; return; }
    tip.textContent = `${d.names[hit[1]]}${hit[4] ? " (failed)" : hit[5] ? " (running)" : ""}\nworker ${d.workers[hit[0]][1]}\nnode ${d.workers[hit[0]][0]}\n${fmtTime(d.t0 + hit[2])}, ${fmtDur(hit[3] - hit[2])}`;
    tip.style.left = (ev.clientX + 12) + "px"; tip.style.top = (ev.clientY + 12) + "px"; tip.hidden = false;
  };
  canvas.onmouseleave = () => { $("#tooltip").hidden = true; };
  document.body.dataset.timeline = String(+(document.body.dataset.timeline || 0) + 1);
}

views["placement-groups"] = {
  title: "Placement groups",
  async render(el) {
    const res = await stateQuery("placement_groups", { limit: 10000, detail: true });
    if (!res.ok) { el.innerHTML = panel("Placement groups", unavailable(res, "The placement group list (state API)")); return; }
    el.innerHTML = panel(`Placement groups (${res.rows.length})`, table([
      ["id", p => `<span class="mono">${esc(p.placement_group_id)}</span>`],
      ["name", p => esc(p.name || "")],
      ["state", p => badge(p.state)],
      ...(res.rows.some(p => p.strategy) ? [["strategy", p => esc(p.strategy || "")]] : []),
      ["job", p => shortId(p.creator_job_id)],
      ["detached", p => p.is_detached ? "yes" : "no"],
      ["bundles", p => (p.bundles || []).map((b, i) => `<div>#${i}: ${esc(Object.entries(b.unit_resources || b.resources || {}).map(([k, v]) => `${k} ${v}`).join(", "))}${b.node_id ? ` on ${shortId(b.node_id)}` : ""}</div>`).join("")],
    ], res.rows, "no placement group"));
  },
};

views.objects = {
  title: "Objects",
  async render(el) {
    const [status, objs] = await Promise.all([api("/api/cluster_status"), stateQuery("objects", { limit: 10000, detail: true })]);
    if (!objs.ok) { el.innerHTML = panel("Objects", unavailable(objs, "The object list (state API)")); return; }
    const capacity = status.ok ? status.data.data.cluster_resources.object_store_memory : null;
    const total = objs.rows.reduce((a, o) => a + (o.object_size || 0), 0);
    const group = key => {
      const m = {};
      for (const o of objs.rows) {
        const k = key(o);
        const e = m[k] || (m[k] = { key: k, n: 0, bytes: 0 });
        e.n++; e.bytes += o.object_size || 0;
      }
      return Object.values(m).sort((a, b) => b.bytes - a.bytes);
    };
    const groupTable = (title, rows) => panel(title, table([
      ["", r => `<span style="word-break:break-all">${esc(r.key)}</span>`], ["objects", r => fmtNum(r.n), "num"], ["size", r => fmtBytes(r.bytes), "num"],
      ["share", r => bar(r.bytes, total || 1, "", true)]], rows));
    const spilled = objs.rows.filter(o => o.spilled || o.spilled_url).length;
    const largest = objs.rows.slice().sort((a, b) => (b.object_size || 0) - (a.object_size || 0)).slice(0, 200);
    el.innerHTML = `<div class="cards">
      <div class="card"><div class="v">${fmtNum(objs.num_filtered !== undefined ? objs.num_filtered : objs.rows.length)}</div><div class="k">objects referenced</div></div>
      <div class="card"><div class="v">${fmtBytes(total)}</div><div class="k">their size${objs.total > objs.rows.length ? " (of those listed)" : ""}</div></div>
      <div class="card"><div class="v">${capacity ? fmtBytes(capacity) : "–"}</div><div class="k">store capacity</div></div>
      <div class="card"><div class="v">${fmtNum(spilled)}</div><div class="k">spilled (as the rows say)</div></div></div>` +
      (capacity ? panel("Object store use", bar(total, capacity, `${fmtBytes(total)} / ${fmtBytes(capacity)}`)) : "") +
      `<div class="grid wide">` +
      groupTable("By reference type (what keeps them)", group(o => o.reference_type || "?")) +
      groupTable("By owner (process)", group(o => `${o.type || ""} pid ${o.pid || "?"} @ ${o.ip || (o.node_id || "").slice(0, 8)}`)) +
      groupTable("By node", group(o => o.node_id || o.ip || "?")) +
      groupTable("By task status", group(o => o.task_status || "?")) + `</div>` +
      panel(`Largest objects (${largest.length} shown)`, table([
        ["object id", o => shortId(o.object_id)], ["size", o => fmtBytes(o.object_size), "num"],
        ["reference", o => esc(o.reference_type || "")], ["task status", o => esc(o.task_status || "")],
        ["owner", o => esc(`${o.type || ""} pid ${o.pid || "?"}`)], ["node", o => shortId(o.node_id)],
        ["call site", o => `<span class="mono">${esc(o.call_site || "")}</span>`],
      ], largest, "no object is referenced"));
  },
};

const logState = { node: null, name: null, text: "", next: 0, filter: "" };
views.logs = {
  title: "Logs",
  async render(el) {
    const list = await api("/api/ui/logs");
    if (!list.ok) { el.innerHTML = panel("Logs", unavailable(list, "The log files")); return; }
    if (!$("#logfiles", el)) {
      el.innerHTML = `<div class="logs"><section class="panel logfiles"><h2>Log files</h2>
        <input type="search" id="logfilter" placeholder="filter files" style="width:100%;margin-bottom:6px"><div id="logfiles"></div></section>
        <section class="panel"><h2 id="logtitle">Choose a log file</h2><pre class="logtext" id="logtext"></pre></section></div>`;
      $("#logfilter", el).oninput = e => { logState.filter = e.target.value; refresh(); };
    }
    const f = logState.filter.toLowerCase();
    $("#logfiles", el).innerHTML = list.data.nodes.map(n => `<div class="muted" style="margin:6px 0 2px">node: ${esc(n.node)}</div>` +
      n.files.filter(x => !f || x.name.toLowerCase().includes(f)).map(x =>
        `<div class="f ${logState.node === n.node && logState.name === x.name ? "sel" : ""}" data-node="${esc(n.node)}" data-name="${esc(x.name)}">` +
        `<span class="mono">${esc(x.name)}</span><span class="muted">${fmtBytes(x.size)}</span></div>`).join("")).join("");
    el.querySelectorAll(".logfiles div.f").forEach(d => d.onclick = () => {
      Object.assign(logState, { node: d.dataset.node, name: d.dataset.name, text: "", next: null });
      refresh();
    });
    if (!logState.name) return;
    const pre = $("#logtext", el);
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
    const q = logState.next === null ? "tail=1000" : `offset=${logState.next}`;
    const key = `${logState.node}/${logState.name}`;
    const res = await api(`/api/ui/logs/${encodeURIComponent(logState.name)}?node=${encodeURIComponent(logState.node)}&${q}`);
    if (key !== `${logState.node}/${logState.name}`) return;     // another file was chosen
    $("#logtitle", el).textContent = `${logState.name} (node ${logState.node})`;
    if (!res.ok) { pre.textContent = res.error; return; }
    if (logState.next !== null && res.data.size < logState.next) {     // truncated: tail again
      Object.assign(logState, { text: "", next: null });
      return;
    }
    logState.text = (logState.text + res.data.text).slice(-2000000);
    logState.next = res.data.next_offset;
    const shown = `${key}:${logState.next}:${logState.text.length}`;
    if (pre.dataset.shown !== shown) {
      pre.textContent = logState.text;
      pre.dataset.shown = shown;
      if (atBottom || q.startsWith("tail")) pre.scrollTop = pre.scrollHeight;
    }
  },
};

views.metrics = {
  title: "Metrics",
  async render(el) {
    const res = await loadHistory();
    if (!res.ok) { el.innerHTML = panel("Metrics", unavailable(res, "The metrics history")); return; }
    const S = history.samples, [t0, t1] = chartWindow();
    const pts = f => S.map(s => [s.t, f(s)]);
    const r = (k, i) => s => s.resources[k] ? s.resources[k][i] : null;
    const charts = [
      ["CPU (logical): in use and total", [
        { name: "in use", color: "#2f6fde", points: pts(r("CPU", 0)) },
        { name: "total", color: "#9aa3b5", points: pts(r("CPU", 1)) }]],
      ["GPU (logical): in use and total", [
        { name: "in use", color: "#8e44ad", points: pts(r("GPU", 0)) },
        { name: "total", color: "#9aa3b5", points: pts(r("GPU", 1)) }]],
      ["Object store", [
        { name: "objects' size", color: "#1e9e5a", points: pts(s => s.object_store_used) },
        { name: "capacity", color: "#9aa3b5", points: pts(r("object_store_memory", 1)) }], fmtBytes],
      ["Head machine memory", [
        { name: "used", color: "#d98b00", points: pts(s => s.host_memory[0]) },
        { name: "total", color: "#9aa3b5", points: pts(s => s.host_memory[1]) }], fmtBytes],
      ["Head machine CPU %", [{ name: "CPU %", color: "#d23c3c", points: pts(s => s.host_cpu_percent) }], v => v.toFixed(0) + "%", 100],
      ["Tasks by state", ["RUNNING", "FINISHED", "FAILED", "PENDING_NODE_ASSIGNMENT"].map((st, i) => ({
        name: st, color: ["#2f6fde", "#1e9e5a", "#d23c3c", "#d98b00"][i], points: pts(s => s.tasks ? s.tasks[st] || 0 : null) }))],
      ["Actors by state", ["ALIVE", "PENDING_CREATION", "RESTARTING", "DEAD"].map((st, i) => ({
        name: st, color: ["#1e9e5a", "#d98b00", "#8e44ad", "#d23c3c"][i], points: pts(s => s.actors ? s.actors[st] || 0 : null) }))],
    ];
    el.innerHTML = `<div class="muted" style="margin-bottom:8px">The last hour, sampled by the dashboard every ${history.interval} s (${S.length} samples).</div>` +
      `<div class="charts">${charts.map((c, i) => panel(c[0], `<canvas id="chart${i}"></canvas>${legend(c[1])}`)).join("")}</div>`;
    charts.forEach((c, i) => lineChart($(`#chart${i}`, el), c[1], { t0, t1, fmt: c[2], ymax: c[3] }));
  },
};

// ------------------------------------------------------------- the loop
let current = null, lastUpdate = 0, timer = null, busy = false, again = false;
function viewName() {
  const v = (location.hash || "").replace(/^#\/?/, "").split("?")[0];
  return views[v] ? v : "overview";
}
// one render at a time; a refresh asked for meanwhile (a click) runs after it
async function refresh() {
  if (busy) { again = true; return; }
  busy = true;
  const name = current, el = $("#view").firstElementChild;
  try {
    await views[name].render(el);
    if (name === current) {
      lastUpdate = Date.now(); showUpdated();
      // for tests and benchmarks: which view has drawn, how many times
      document.body.dataset.view = name;
      document.body.dataset.renders = String(+(document.body.dataset.renders || 0) + 1);
    }
  } catch (e) {
    if (name !== current || !el.isConnected) return;    // the view was left meanwhile
    console.error(e);
    el.insertAdjacentHTML("afterbegin", `<div class="panel error">This view failed to draw: ${esc(e && e.stack || e)}</div>`);
  } finally {
    busy = false;
    if (again) { again = false; setTimeout(refresh, 0); }
  }
}
function showUpdated() {
  const s = lastUpdate ? Math.round((Date.now() - lastUpdate) / 1000) : null;
  $("#updated").textContent = s === null ? "loading…" : `updated ${s}s ago`;
}
function schedule() {
  clearInterval(timer);
  timer = setInterval(() => {
    if ($("#live").checked && !document.hidden) { tick++; refresh(); }
  }, POLL_MS);
}
function route() {
  const name = viewName();
  if (name !== current) {
    current = name; tick = 0; lastUpdate = 0; showUpdated();
    document.body.dataset.renders = "0";
    document.body.dataset.timeline = "0";
    document.title = `${views[name].title}: pyray dashboard`;
    document.querySelectorAll("#nav a").forEach(a => a.classList.toggle("active", a.dataset.view === name));
    // a fresh element: a render of the view left behind draws into a detached one
    $("#view").innerHTML = `<div><div class="muted">loading ${esc(views[name].title.toLowerCase())}…</div></div>`;
    $("#tooltip").hidden = true;
    actorState.focus = false;
    taskState.timelineTick = -99;
  }
  refresh();
  schedule();
}
window.addEventListener("hashchange", route);
window.addEventListener("resize", () => { if (current === "metrics" || current === "tasks" || current === "overview") refresh(); });
setInterval(showUpdated, 1000);
api("/api/version").then(r => { if (r.ok) $("#session").textContent = r.data.session_name || ""; });
route();
