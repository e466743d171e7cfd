// The Integrator dashboard: reads the service's API with a reader token kept in this tab's
// sessionStorage (never in the page, the URL or a cookie), and renders everything with DOM
// APIs and textContent: branch names, paths and messages come from git and from pushers.
"use strict";

(function () {
  const TOKEN_KEY = "integrator.dashboard.token";
  const REFRESH_MS = 5000;
  // The cutover evidence and the audit read the canonical repository: every sixth refresh.
  const EVIDENCE_EVERY = 6;

  const state = {
    timer: null,
    round: 0,
    inFlight: false,
    auditMissing: false,
    evidence: null,
    audit: null,
    clockSkewMs: 0,
    rendered: {},
  };

  // ---- small DOM helpers (text only, never markup) ----

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function badge(text, tone) {
    return el("span", { class: "badge " + tone, text: text });
  }

  function facts(pairs) {
    const list = el("dl", { class: "facts" });
    for (const [name, value] of pairs) {
      if (value === null || value === undefined || value === "") continue;
      list.append(el("dt", { text: name }), el("dd", {}, value));
    }
    return list;
  }

  function items(nodes, empty) {
    if (!nodes.length) return [el("p", { class: "muted", text: empty })];
    return [el("ul", { class: "items" }, nodes.map((n) => el("li", {}, n)))];
  }

  function short(sha) {
    return sha ? el("code", { class: "sha", title: sha, text: String(sha).slice(0, 10) }) : "—";
  }

  // An update's old or new side: all zeros is a creation or a deletion, not a commit.
  function side(sha, zeros) {
    return /^0+$/.test(sha || "") ? zeros : short(sha);
  }

  function value(v) {
    if (v === null || v === undefined) return "—";
    return typeof v === "object" ? JSON.stringify(v) : String(v);
  }

  function serverNow() {
    return Date.now() + state.clockSkewMs;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(Math.abs(seconds)));
    if (s < 90) return s + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " days";
  }

  function when(iso) {
    if (!iso) return "—";
    const at = Date.parse(iso);
    if (Number.isNaN(at)) return String(iso);
    const ago = (serverNow() - at) / 1000;
    const text = ago >= 0 ? duration(ago) + " ago" : "in " + duration(ago);
    return el("time", { datetime: iso, title: iso, text: text });
  }

  function panel(id) {
    return document.querySelector("#" + id + " .body");
  }

  // Replace a panel's content only when its data changed: no flicker, and a reader's
  // selection or scroll inside an unchanged panel stays put.
  function show(id, data, render) {
    const key = JSON.stringify(data);
    if (state.rendered[id] === key) return;
    state.rendered[id] = key;
    const nodes = render(data).flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false);
    panel(id).replaceChildren(...nodes);
  }

  // ---- the API ----

  class Unauthorized extends Error {}

  async function api(path, { optional = false } = {}) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) throw new Unauthorized("no token");
    const response = await fetch(path, {
      headers: { Authorization: "Bearer " + token, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
    if (response.status === 401) throw new Unauthorized(await message(response));
    if (optional && response.status === 404) return null;
    if (!response.ok) throw new Error(await message(response));
    return response.json();
  }

  async function message(response) {
    try {
      const body = await response.json();
      return body.message || response.status + " " + response.statusText;
    } catch (_) {
      return response.status + " " + response.statusText;
    }
  }

  // ---- panels ----

  const MODE_MEANING = {
    off: "Pushes to main are allowed and recorded.",
    shadow: "Pushes to main are allowed; what cutover would refuse is recorded.",
    cutover: "Only the integrator's registered updates may move main.",
  };
  const MODE_TONE = { off: "warn", shadow: "info", cutover: "ok" };

  function renderMode(mode) {
    const root = panel("mode");
    root.className = "body " + (MODE_TONE[mode.mode] || "info");
    const changed = mode.changed_at
      ? ["Changed ", when(mode.changed_at), " by ", mode.changed_by || "unknown",
         mode.reason ? ": " + mode.reason : ""]
      : ["Never changed: a fresh install starts in shadow."];
    return [
      el("p", { class: "mode-name", id: "mode-name" }, mode.mode),
      el("p", {}, MODE_MEANING[mode.mode] || ""),
      el("p", { id: "mode-change" }, ...changed),
      mode.forced
        ? el("p", {}, badge("forced", "bad"), " Cutover was forced past incomplete evidence by ",
             mode.forced_by || "unknown", mode.forced_reason ? ": " + mode.forced_reason : "")
        : mode.mode === "cutover"
          ? el("p", {}, badge("not forced", "ok"), " Cutover was taken on complete evidence.")
          : null,
    ];
  }

  function renderConditions(conditions) {
    if (!conditions.length) return [el("p", {}, badge("ok", "ok"), " No active condition.")];
    return items(
      conditions.map((c) => [
        el("div", { class: "line" }, badge(c.code, "bad"), el("span", {}, "since ", when(c.since))),
        el("p", {}, c.explanation),
        el("p", { class: "next-action" }, "What to do: ", c.action),
      ]),
      "",
    );
  }

  function renderLease(lease) {
    if (!lease.held) {
      return [
        el("p", { id: "lease-holder" }, badge("no holder", "warn"), " Nobody holds the lease."),
        facts([
          ["Epoch", String(lease.epoch ?? "—")],
          ["Last holder", lease.last_holder],
        ]),
      ];
    }
    return [
      el("p", { id: "lease-holder" }, "Held by ", el("strong", { text: lease.holder })),
      facts([
        ["Epoch", String(lease.epoch)],
        ["Expires in", lease.expires_in_seconds === null ? "—" : duration(lease.expires_in_seconds)],
        ["Renewed", when(lease.renewed_at)],
      ]),
    ];
  }

  function renderPause(pause) {
    if (!pause.paused) return [el("p", {}, badge("running", "ok"), " The queue is not paused.")];
    return [
      el("p", {}, badge("paused", "warn"), " ", pause.summary || "The queue is paused."),
      facts([
        ["By", pause.paused_by],
        ["Since", when(pause.paused_at)],
        ["Until", pause.until ? when(pause.until) : "resumed by an operator"],
        ["Reason", pause.reason],
        ["New submissions", pause.reject_new ? "refused" : "accepted"],
      ]),
    ];
  }

  function candidateLine(c) {
    return el(
      "div",
      { class: "line" },
      el("span", { class: "title" }, c.slug),
      c.lane === "hotfix" ? badge("hotfix lane", "warn") : null,
      badge(c.status.replace("_", " "), c.status === "waiting" ? "info" : "ok"),
      el("span", { class: "muted" }, "position ", c.position ?? "—"),
    );
  }

  function renderQueue({ candidates, turns, depth, median }) {
    const turnOf = new Map(turns.map((t) => [t.id, t]));
    const shown = candidates.filter((c) => ["in_progress", "queued", "waiting"].includes(c.status));
    let readyAhead = 0;
    const nodes = shown.map((c) => {
      const parts = [candidateLine(c), el("p", {}, el("code", { text: c.branch }), " at ", short(c.sha))];
      const turn = turnOf.get(c.id);
      if (c.status === "in_progress") {
        parts.push(el("p", {}, "Being integrated now."));
      } else if (c.status === "queued") {
        const ahead = turn ? turn.ahead : readyAhead;
        const eta = turn && turn.eta_seconds !== null ? ", in about " + duration(turn.eta_seconds) : "";
        parts.push(el("p", {}, "Expected turn: ", ahead === 0 ? "next" : ahead + " ahead" + eta));
      } else {
        parts.push(
          el("p", {}, "Waiting for:"),
          el("ul", { class: "why" }, (c.why.length ? c.why : c.unmet).map((w) => el("li", { text: w }))),
          el("p", { class: "muted" }, "Expected turn: once ready, ", readyAhead,
             " queued ahead of its position"),
        );
      }
      if (c.status !== "waiting") readyAhead += 1;
      return parts;
    });
    const total = ["in_progress", "queued", "waiting"].reduce((n, s) => n + (depth[s] || 0), 0);
    const summary = el(
      "p",
      { class: "muted" },
      `${depth.in_progress || 0} in progress, ${depth.queued || 0} queued, ${depth.waiting || 0} waiting`,
      median === null ? "" : "; a turn takes about " + duration(median),
      total > shown.length ? `; ${total - shown.length} more not shown` : "",
    );
    return [summary, ...items(nodes, "Nothing is waiting or queued.")];
  }

  // The speculative chain (`integrator worker --window W`): each handout's merge commit under
  // test, bottom first, and what it rests on: main, or the build of the candidate below it.
  function renderSpeculation(builds) {
    const slugOf = new Map(builds.map((b) => [b.candidate_id, b.slug]));
    const nodes = builds.map((b) => {
      const below = b.below.length ? b.below[b.below.length - 1] : null;
      const base = below === null
        ? ["on main ", short(b.base)]
        : ["on ", el("span", { class: "title" }, slugOf.get(below) || "candidate " + below),
           " (", short(b.base), ")"];
      return [
        el("div", { class: "line" },
           el("span", { class: "title" }, b.slug),
           badge("depth " + b.depth, b.depth === 1 ? "ok" : "info"),
           el("span", { class: "muted" }, "candidate ", b.candidate_id)),
        el("p", {}, "Checking ", short(b.sha), " ", ...base, ", since ", when(b.since)),
      ];
    });
    const summary = builds.length
      ? el("p", { class: "muted" }, builds.length === 1 ? "1 build" : builds.length + " builds",
           " checked at once; each lands in this order as the commit tested.")
      : null;
    return [summary, ...items(nodes, "No speculative build is under test.")];
  }

  function evidenceList(evidence) {
    if (!evidence || !evidence.length) return null;
    return el(
      "ul",
      { class: "evidence" },
      evidence.map((e) => {
        const rest = Object.entries(e).filter(([k]) => k !== "kind" && k !== "output_tail");
        return el(
          "li",
          {},
          el("span", { class: "title" }, e.kind || "evidence", ": "),
          rest.map(([k, v], i) => [i ? ", " : "", k + " ", el("code", { text: String(v) })]),
          // A long output scrolls in its box: focusable, so a keyboard can scroll it too.
          e.output_tail
            ? el("pre", { class: "tail", tabindex: "0", "aria-label": "output tail", text: e.output_tail })
            : null,
        );
      }),
    );
  }

  function renderBlocked({ followups, candidates }) {
    const byId = new Map(candidates.map((c) => [c.id, c]));
    const followed = new Set(followups.map((f) => f.candidate_id));
    const nodes = followups.map((f) => {
      const c = byId.get(f.candidate_id);
      const now = c ? c.status.replace("_", " ") : "see `integrator queue show " + f.slug + "`";
      return [
        el("div", { class: "line" }, el("h3", { text: f.slug }), badge("follow-up " + f.status, "bad"),
           el("span", { class: "muted" }, "blocked ", f.blocks, f.blocks === 1 ? " time" : " times")),
        facts([
          ["Candidate", c ? [c.branch + " at ", short(c.sha)] : "#" + f.candidate_id],
          ["Now", now],
          ["Blocked", when(f.blocked_at)],
          ["Follow-up opened", when(f.opened_at)],
        ]),
        el("p", { class: "next-action" }, "Next action: ", f.next_action),
        evidenceList(f.conflict_evidence),
        f.diagnostics.map((d) => el("pre", { text: d })),
      ];
    });
    for (const c of candidates) {
      if (c.status === "blocked" && !followed.has(c.id)) {
        nodes.push([candidateLine(c), el("p", {}, c.reason || "")]);
      }
    }
    return items(nodes, "No candidate is blocked.");
  }

  function renderIntegrated(integrated) {
    return items(
      integrated.map((c) => [
        el("div", { class: "line" }, el("span", { class: "title" }, c.slug), badge("integrated", "ok"),
           el("span", { class: "muted" }, when(c.updated_at))),
        el("p", {}, el("code", { text: c.branch }), " at ", short(c.sha)),
      ]),
      "Nothing integrated yet.",
    );
  }

  function renderPredictions(predictions) {
    return items(
      predictions.map((p) => [
        el("div", { class: "line" }, el("span", { class: "title" }, p.slug),
           p.type === "would_block" ? badge("would block", "bad") : badge("would integrate", "ok"),
           el("span", { class: "muted" }, when(p.recorded_at))),
        el("p", {}, el("code", { text: p.branch }), " at ", short(p.sha), " on main ", short(p.main_sha)),
        evidenceList(p.conflict_evidence),
        p.diagnostics.map((d) => el("pre", { text: d })),
      ]),
      "No shadow prediction yet.",
    );
  }

  function renderWouldRejects(found) {
    const nodes = found.groups.map((g) => [
      el("div", { class: "line" }, el("span", { class: "title" }, g.pusher || "unknown pusher"),
         "pushed", el("code", { text: g.ref || "?" }), badge(g.count + (g.count === 1 ? " push" : " pushes"), "warn")),
      el("p", { class: "muted" }, g.repository, " · last ", when(g.last_at), " · ", g.last_reason_code),
    ]);
    const head = el("p", {}, found.total, found.total === 1 ? " push" : " pushes",
                    " recorded that cutover would refuse",
                    found.more_groups ? ` (${found.more_groups} more groups not shown)` : "");
    return [head, ...items(nodes, "None recorded.")];
  }

  function renderHooks(hooks) {
    return items(
      hooks.map((h) => [
        el("div", { class: "line" }, el("span", { class: "title" }, h.repository),
           h.pending ? badge("has not seen cutover", "warn") : badge("has seen cutover", "ok")),
        facts([["Hook", h.instance], ["Last seen", when(h.last_seen_at)], ["Mode seen", h.mode_seen]]),
      ]),
      "No hook has called the service: pushes are not checked. Install them (integrator hooks install).",
    );
  }

  function renderChecklist(evidence) {
    const head = evidence.complete
      ? el("p", {}, badge("complete", "ok"), " Every item holds: `integrator cutover` may switch.")
      : el("p", {}, badge("incomplete", "bad"), " `integrator cutover` refuses until every item holds.");
    const nodes = evidence.items.map((i) => [
      el("div", { class: "line" }, i.ok ? badge("done", "ok") : badge("missing", "bad"),
         el("span", { class: "title" }, i.title)),
      facts(Object.entries(i.numbers || {}).map(([k, v]) => [k.replaceAll("_", " "), value(v)])),
      i.blockers.length ? el("ul", {}, i.blockers.map((b) => el("li", { text: b }))) : null,
    ]);
    return [head, el("ol", { class: "items" }, nodes.map((n) => el("li", {}, n)))];
  }

  const VERDICT = {
    push_allowed: ["allowed", "ok"],
    push_would_reject: ["would reject", "warn"],
    push_rejected: ["rejected", "bad"],
  };

  function renderVerdicts(verdicts) {
    return items(
      verdicts.map((v) => {
        const [label, tone] = VERDICT[v.type] || [v.type, "info"];
        return [
          el("div", { class: "line" }, badge(label, tone), el("span", { class: "title" }, v.pusher || "unknown pusher"),
             el("code", { text: v.ref || "?" }), el("span", { class: "muted" }, when(v.recorded_at))),
          el("p", { class: "muted" }, side(v.old, "(created)"), " → ", side(v.new, "(deleted)"), " · mode ", v.mode || "?",
             " · ", v.reason_code || "", v.decided_locally ? " · decided by the hook alone" : "",
             v.bypass ? " · break-glass bypass" : ""),
        ];
      }),
      "No push seen yet.",
    );
  }

  const EXPLAINED = {
    queue: "integrated by the queue",
    push: "pushed by a person (recorded verdict)",
    bypass: "let through by break-glass or fail-open",
    before_guard: "before the guard was installed",
    unexplained: "unexplained",
  };

  function auditItem(c) {
    const kind = (c.explanation && c.explanation.kind) || "unexplained";
    const summary = (c.explanation && c.explanation.summary) || EXPLAINED[kind] || kind;
    return [
      el("div", { class: "line" }, short(c.sha),
         c.failure ? badge("pushed around the guard", "bad")
           : badge(EXPLAINED[kind] || kind, kind === "unexplained" ? "warn" : "ok"),
         el("span", { class: "muted" }, c.mode ? "mode " + c.mode : "")),
      el("p", {}, el("span", { class: "title" }, c.subject || ""), " ",
         el("span", { class: "muted" }, "by ", c.author || "unknown", ", committed ", when(c.committed_at))),
      el("p", { class: "summary" }, summary),
    ];
  }

  function renderAudit(audit) {
    if (audit === null) {
      return [el("p", { class: "muted" }, "This service has no audit of main (GET /v1/audit answered 404).")];
    }
    // Unexplained commits on top (failures first), then the newest commits of main.
    const unexplained = audit.unexplained_items
      || audit.items.filter((i) => i.failure || (i.explanation && i.explanation.kind === "unexplained"));
    const listed = new Set(unexplained.map((i) => i.sha));
    const rest = audit.items.filter((i) => !listed.has(i.sha));
    const failures = audit.unexplained_after_cutover || 0;
    const counts = Object.entries(audit.counts || {}).filter(([, n]) => n)
      .map(([kind, n]) => `${n} ${EXPLAINED[kind] || kind}`).join(" · ");
    return [
      el("p", { id: "audit-verdict" },
         failures ? badge(failures + " pushed around the guard after cutover", "bad") : badge("guard held", "ok"),
         " ", audit.unexplained, " unexplained commit", audit.unexplained === 1 ? "" : "s",
         audit.total !== undefined ? [" of ", audit.total, " on main"] : "",
         audit.head ? ["; main at ", short(audit.head)] : ""),
      counts ? el("p", { class: "muted" }, counts) : null,
      unexplained.length ? el("h3", { text: "Unexplained" }) : null,
      unexplained.length ? items(unexplained.map(auditItem), "") : null,
      el("h3", { text: "Latest commits on main" }),
      items(rest.map(auditItem), "main has no other commit to explain."),
    ];
  }

  // ---- the loop ----

  function signIn(text) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.rendered = {};
    document.getElementById("board").hidden = true;
    document.getElementById("sign-out").hidden = true;
    document.getElementById("problem").hidden = true;
    document.getElementById("login").hidden = false;
    document.getElementById("login-message").textContent = text || "";
    document.getElementById("updated").textContent = "Not signed in.";
    document.getElementById("token").focus();
  }

  // A panel whose endpoint failed says so in place; the others still show what they read.
  function failed(id, error) {
    const key = "error:" + error.message;
    if (state.rendered[id] === key) return;
    state.rendered[id] = key;
    panel(id).replaceChildren(el("p", { class: "message" }, "Could not read this: ", error.message));
  }

  function showOr(id, results, names, data, render) {
    const error = names.map((n) => results[n]).find((r) => r instanceof Error);
    if (error) failed(id, error);
    else show(id, data(), render);
  }

  async function settle(calls) {
    const names = Object.keys(calls);
    const settled = await Promise.allSettled(Object.values(calls));
    const results = {};
    settled.forEach((s, i) => {
      results[names[i]] = s.status === "fulfilled" ? s.value
        : s.reason instanceof Error ? s.reason : new Error(String(s.reason));
    });
    return results;
  }

  async function refresh() {
    if (state.inFlight) return;
    state.inFlight = true;
    const problem = document.getElementById("problem");
    try {
      const slow = state.round % EVIDENCE_EVERY === 0;
      const r = await settle({
        status: api("/v1/status"),
        candidates: api("/v1/candidates?limit=200"),
        followups: api("/v1/followups?limit=200"),
        pause: api("/v1/queue/pause"),
        activity: api("/v1/activity"),
        evidence: slow || !state.evidence ? api("/v1/evidence") : state.evidence,
        audit: state.auditMissing ? null
          : slow || !state.audit ? api("/v1/audit?limit=30", { optional: true }) : state.audit,
      });
      const refused = Object.values(r).find((v) => v instanceof Unauthorized);
      if (refused) throw refused;
      if (r.status instanceof Error) throw r.status;
      state.round += 1;
      state.evidence = r.evidence instanceof Error ? null : r.evidence;
      state.audit = r.audit instanceof Error ? null : r.audit;
      state.auditMissing = r.audit === null; // an older service: not asked again until reload
      const status = r.status;
      state.clockSkewMs = Date.parse(status.now) - Date.now();
      document.getElementById("board").hidden = false;
      document.getElementById("login").hidden = true;
      document.getElementById("sign-out").hidden = false;
      document.getElementById("repository").textContent = status.repository;
      show("mode", status.mode, renderMode);
      show("conditions", status.conditions, renderConditions);
      show("lease", status.lease, renderLease);
      showOr("pause", r, ["pause"], () => r.pause, renderPause);
      showOr("queue", r, ["candidates"], () => ({
        candidates: r.candidates.items, turns: status.queue.turns, depth: status.queue.depth,
        median: status.queue.turn_seconds_median }), renderQueue);
      show("speculation", status.speculation || [], renderSpeculation);
      showOr("blocked", r, ["followups", "candidates"],
             () => ({ followups: r.followups.items, candidates: r.candidates.items }), renderBlocked);
      showOr("integrated", r, ["activity"], () => r.activity.integrated, renderIntegrated);
      showOr("predictions", r, ["activity"], () => r.activity.predictions, renderPredictions);
      showOr("would-rejects", r, ["activity"], () => r.activity.would_rejects, renderWouldRejects);
      showOr("verdicts", r, ["activity"], () => r.activity.verdicts, renderVerdicts);
      showOr("hooks", r, ["evidence"], () => r.evidence.hooks, renderHooks);
      showOr("checklist", r, ["evidence"], () => r.evidence, renderChecklist);
      showOr("audit", r, ["audit"], () => r.audit, renderAudit);
      problem.hidden = true;
      document.getElementById("updated").textContent =
        "Updated " + new Date().toLocaleTimeString() + (status.ok ? "" : " — attention needed");
    } catch (error) {
      if (error instanceof Unauthorized) {
        signIn("The service refused the token (" + error.message + "). Enter a reader token.");
      } else {
        problem.textContent = "Could not refresh: " + error.message + ". Retrying.";
        problem.hidden = false;
      }
    } finally {
      state.inFlight = false;
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    state.timer = null;
    if (document.hidden || !sessionStorage.getItem(TOKEN_KEY)) return;
    state.timer = setTimeout(async () => {
      await refresh();
      schedule();
    }, REFRESH_MS);
  }

  async function start() {
    await refresh();
    schedule();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = document.getElementById("token");
      const token = input.value.trim();
      input.value = "";
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      document.getElementById("login-message").textContent = "";
      start().then(() => {
        if (!document.getElementById("board").hidden) document.getElementById("main").focus();
      });
    });
    document.getElementById("sign-out").addEventListener("click", () => {
      clearTimeout(state.timer);
      signIn("Token forgotten.");
    });
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        clearTimeout(state.timer);
        state.timer = null;
      } else if (sessionStorage.getItem(TOKEN_KEY)) {
        start();
      }
    });
    if (sessionStorage.getItem(TOKEN_KEY)) start();
    else signIn("");
  });
})();
