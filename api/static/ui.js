// synthcohort review page. Everything it shows comes from the /v1 REST endpoints, called with
// the API key the user typed once: the key lives in sessionStorage (gone when the tab closes)
// and travels only in the X-API-Key header, never in an address. No framework, no build step,
// nothing fetched from another site. The server checks every decision; the page only hides
// the controls a role may not use.
"use strict";

const KEY_STORE = "synthcohort.apiKey";
const FINISHED = ["succeeded", "failed", "cancelled"];
const REASONS = {
  near_copy: "near copy of a training image", artefact: "artefact", implausible_anatomy: "implausible anatomy",
  wrong_class: "wrong class", other: "other",
};
const REASON_KEYS = ["near_copy", "artefact", "implausible_anatomy", "wrong_class", "other"];
const FLAG_WORDS = {
  near_copy: "near copy", outlier: "outlier", broken: "broken", gate_not_decisive: "gate not decisive",
};

// ---------------------------------------------------------------- small DOM helpers
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const $ = (sel, root) => (root || document).querySelector(sel);
const fmt = (x, digits = 3) => (x === null || x === undefined || Number.isNaN(Number(x)) ? "—"
  : String(Number(Number(x).toPrecision(digits)) + 0));  // + 0: -0 reads 0
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

function status(message, kind) {
  const box = $("#status");
  box.textContent = message || "";
  box.className = kind || "";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// ---------------------------------------------------------------- the API
class ApiError extends Error {
  constructor(status, detail, field) {
    super(detail);
    this.status = status;
    this.field = field;
  }
}

function idempotencyKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return "ui-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

const api = {
  key: () => sessionStorage.getItem(KEY_STORE),
  async request(method, path, body) {
    const headers = { "X-API-Key": api.key() || "" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method === "POST") headers["Idempotency-Key"] = idempotencyKey();
    const r = await fetch("/v1" + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    });
    if (!r.ok) {
      let b = {};
      try { b = await r.json(); } catch (_) { /* not JSON */ }
      if (r.status === 401) signOut("Your key was not accepted (unknown or revoked). Sign in again.");
      throw new ApiError(r.status, b.detail || r.statusText, b.field);
    }
    return r;
  },
  async get(path) { return (await api.request("GET", path)).json(); },
  async post(path, body) { return (await api.request("POST", path, body)).json(); },
  async blob(path) { return (await api.request("GET", path)).blob(); },
  async all(path) {
    const items = [];
    for (let offset = 0; ; offset += 500) {
      const sep = path.includes("?") ? "&" : "?";
      const page = await api.get(`${path}${sep}limit=500&offset=${offset}`);
      items.push(...page.items);
      if (items.length >= page.total || page.items.length === 0) return items;
    }
  },
};

// ---------------------------------------------------------------- sign-in
function signOut(message) {
  sessionStorage.removeItem(KEY_STORE);
  stopPolling();
  showSignIn(message);
}

function showSignIn(message) {
  $("#who").textContent = "";
  $("#sign-out").hidden = true;
  // The input has no name and the form no action (and the policy forbids form submission), so
  // the key can never end up in an address, even without this script.
  const input = el("input", { id: "api-key", type: "password", autocomplete: "off", spellcheck: "false",
                              size: 52, placeholder: "sck_…", "aria-label": "API key" });
  const form = el("form", { id: "sign-in", class: "sign-in" },
    el("h1", { text: "Sign in" }),
    el("p", { text: "Paste your API key (from `synthcohort keys create`). It is kept in this tab only and "
                    + "sent to this server in a header; it never appears in an address or a log." }),
    message ? el("p", { class: "bad", text: message }) : null,
    input, " ", el("button", { id: "sign-in-button", type: "submit", text: "Sign in" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    input.value = "";
    route();
  });
  $("#main").replaceChildren(form);
  input.focus();
}

// ---------------------------------------------------------------- router
let me = null;
let pollTimer = null;
function stopPolling() { if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; } }

async function route() {
  stopPolling();
  status("");
  if (!api.key()) return showSignIn();
  try {
    me = await api.get("/me");
  } catch (e) {
    if (e.status !== 401) status(`The API did not answer: ${e.message}`, "bad");
    return undefined;
  }
  $("#who").textContent = `Signed in as ${me.name} (${me.role})`;
  $("#sign-out").hidden = false;
  const path = location.pathname;
  const m = path.match(/^\/ui\/cohorts\/([^/]+)\/?$/);
  try {
    if (m) return await cohortPage(decodeURIComponent(m[1]));
    if (/^\/ui\/jobs\/?$/.test(path)) return await jobsPage();
    return await cohortsPage();
  } catch (e) {
    status(e.message, "bad");
    return undefined;
  }
}

// ---------------------------------------------------------------- cohorts list
async function cohortsPage() {
  const page = await api.get("/cohorts?limit=200");
  const rows = page.items.map((c) => el("tr", { "data-cohort": c.id },
    el("td", {}, el("a", { href: `/ui/cohorts/${encodeURIComponent(c.id)}`, text: c.id })),
    el("td", { text: c.status }), el("td", {}, verdictBadge(c.verdict)),
    el("td", { text: c.class_name }), el("td", { text: c.generator }),
    el("td", { text: `${c.released} released, ${c.held} held, ${c.rejected} rejected of ${c.count}` }),
    el("td", { text: when(c.created_at) })));
  $("#main").replaceChildren(
    el("h1", { text: "Cohorts" }),
    page.total ? el("table", { id: "cohorts" },
      el("tr", {}, ["cohort", "status", "verdict", "class", "generator", "samples", "created"].map((h) => el("th", { text: h }))),
      rows) : el("p", { class: "muted", text: "No cohort yet that this key may see." }),
    el("p", {}, el("a", { href: "/ui/jobs", text: "Jobs and their progress" })));
}

function verdictBadge(verdict) {
  if (!verdict) return el("span", { class: "muted", text: "—" });
  return el("span", { class: `verdict ${verdict}`, text: verdict.replace("_", " ") });
}

// ---------------------------------------------------------------- jobs
function jobRow(job) {
  const target = job.target_id && job.target_id.startsWith("coh-")
    ? el("a", { href: `/ui/cohorts/${encodeURIComponent(job.target_id)}`, text: job.target_id })
    : (job.target_id || "—");
  return el("tr", { "data-job": job.id },
    el("td", {}, el("code", { text: job.id })), el("td", { text: job.kind }), el("td", {}, target),
    el("td", { class: "status" }), el("td", { class: "stage" }),
    el("td", {}, el("progress", { max: 100, value: 0 }), " ", el("span", { class: "percent" })),
    el("td", { class: "eta" }), el("td", { class: "error" }));
}

function updateJobRow(row, job) {
  row.querySelector(".status").textContent = job.status;
  row.querySelector(".stage").textContent = job.stage || "—";
  row.querySelector("progress").value = job.percent;
  row.querySelector(".percent").textContent = job.percent < 10 && job.percent > 0
    ? `${job.percent.toFixed(1)}%` : `${Math.round(job.percent)}%`;
  row.querySelector(".eta").textContent = FINISHED.includes(job.status) ? "—"
    : job.status === "queued" ? "waiting for a worker" : `ETA ${duration(job.eta_s)}`;
  row.querySelector(".error").textContent = job.error || "";
  row.className = `job-${job.status}`;
}

async function jobsPage() {
  const table = el("table", { id: "jobs" },
    el("tr", {}, ["job", "kind", "target", "status", "stage", "progress", "time left", "error"].map((h) => el("th", { text: h }))));
  $("#main").replaceChildren(el("h1", { text: "Jobs" }),
    el("p", { class: "muted", text: "Your jobs, newest first; running ones update every two seconds." }), table);
  const rows = new Map();
  const refreshList = async () => {
    const page = await api.get("/jobs?limit=100");
    for (const job of page.items.slice().reverse()) {
      if (!rows.has(job.id)) {
        const row = jobRow(job);
        rows.set(job.id, row);
        table.insertBefore(row, table.children[1] || null);
      }
      updateJobRow(rows.get(job.id), job);
    }
    if (!page.total) status("No job yet.");
  };
  await refreshList();
  let tick = 0;
  const poll = async () => {
    tick += 1;
    try {
      if (tick % 5 === 0) await refreshList();  // new jobs appear within ten seconds
      for (const [id, row] of rows) {
        if (FINISHED.includes(row.querySelector(".status").textContent)) continue;
        updateJobRow(row, await api.get(`/jobs/${encodeURIComponent(id)}`));
      }
    } catch (e) {
      status(e.message, "bad");
    }
    if (location.pathname.startsWith("/ui/jobs")) pollTimer = setTimeout(poll, 2000);
  };
  pollTimer = setTimeout(poll, 2000);
}

// ---------------------------------------------------------------- images: decode, window/level, draw
function b64bytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
  return out;
}

// An ImageArray (GET …/pixels, …/nearest): uint16 little-endian intensities, mask 0/1.
function decodeArray(a) {
  const bytes = b64bytes(a.data);
  const dv = new DataView(bytes.buffer);
  const vals = new Uint16Array(bytes.length / 2);
  for (let i = 0; i < vals.length; i += 1) vals[i] = dv.getUint16(2 * i, true);
  return { shape: a.shape, dims: a.spatial_dims, vals, mask: a.mask ? b64bytes(a.mask) : null };
}

// A PNG thumbnail as the same kind of image (grey when every pixel is).
async function decodePng(blob) {
  const bitmap = await createImageBitmap(blob);
  const c = document.createElement("canvas");
  c.width = bitmap.width;
  c.height = bitmap.height;
  const ctx = c.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, c.width, c.height).data;
  const n = c.width * c.height;
  let grey = true;
  for (let i = 0; i < n && grey; i += 1) grey = rgba[4 * i] === rgba[4 * i + 1] && rgba[4 * i] === rgba[4 * i + 2];
  const channels = grey ? 1 : 3;
  const vals = new Uint16Array(n * channels);
  for (let ch = 0; ch < channels; ch += 1) for (let i = 0; i < n; i += 1) vals[ch * n + i] = rgba[4 * i + ch] * 257;
  return { shape: [channels, c.height, c.width], dims: 2, vals, mask: null };
}

// window/level in [0, 1] of the stored range; zoom: grid tile edge; detail: edge of a detail view (px).
const view = { window: 1.0, level: 0.5, mask: true, zoom: 112, detail: 192 };
const redrawers = new Set();
function redrawAll() { for (const f of redrawers) f(); }

// planes: how a 2D picture is cut from the image (2D: itself; 3D: one of three axes at a slice).
function plane(img, axis, k) {
  const [, d0, d1, d2] = img.shape;
  if (img.dims === 2) return { w: img.shape[2], h: img.shape[1], at: (x, y) => y * img.shape[2] + x };
  const hw = d1 * d2;
  if (axis === 0) return { w: d2, h: d1, at: (x, y) => k * hw + y * d2 + x };  // axial: H × W at depth k
  if (axis === 1) return { w: d2, h: d0, at: (x, y) => y * hw + k * d2 + x };  // coronal: D × W at row k
  return { w: d1, h: d0, at: (x, y) => y * hw + x * d2 + k };                  // sagittal: D × H at column k
}

function draw(canvas, img, p) {
  canvas.width = p.w;
  canvas.height = p.h;
  const ctx = canvas.getContext("2d");
  const out = ctx.createImageData(p.w, p.h);
  const d = out.data;
  const channels = img.shape[0];
  const n = img.vals.length / channels;
  const lo = view.level - view.window / 2;
  const span = Math.max(view.window, 1e-6);
  for (let y = 0; y < p.h; y += 1) {
    for (let x = 0; x < p.w; x += 1) {
      const o = p.at(x, y);
      const q = 4 * (y * p.w + x);
      let r; let g; let b;
      if (channels >= 3) {
        r = img.vals[o] / 257; g = img.vals[n + o] / 257; b = img.vals[2 * n + o] / 257;
      } else {
        const v = Math.min(1, Math.max(0, (img.vals[o] / 65535 - lo) / span));
        r = g = b = v * 255;
      }
      if (view.mask && img.mask && img.mask[o]) { r = r * 0.55 + 115; g *= 0.55; b *= 0.55; }
      d[q] = r; d[q + 1] = g; d[q + 2] = b; d[q + 3] = 255;
    }
  }
  ctx.putImageData(out, 0, 0);
}

// A viewer: one canvas for 2D; for 3D three orthogonal slices, each with its slider.
function viewer(img, title) {
  const box = el("div", { class: "viewer" });
  const canvases = [];
  // one whole-number enlargement for every plane of the image, so pixels stay square and crisp
  const edge = Math.max(...img.shape.slice(1));
  const size = (p, c) => {
    const k = Math.max(1, Math.floor(view.detail / edge));
    c.style.width = `${p.w * k}px`;
    c.style.height = `${p.h * k}px`;
  };
  if (img.dims === 2) {
    const c = el("canvas", { class: "pix", "aria-label": title });
    const redraw = () => { const p = plane(img); draw(c, img, p); size(p, c); };
    canvases.push(redraw);
    box.append(c);
  } else {
    const names = ["axial", "coronal", "sagittal"];
    for (let axis = 0; axis < 3; axis += 1) {
      const count = img.shape[axis + 1];
      const slider = el("input", { type: "range", min: 0, max: count - 1, value: Math.floor(count / 2),
                                   class: `slice slice-${names[axis]}`, "aria-label": `${names[axis]} slice` });
      const label = el("span", { class: "muted" });
      const c = el("canvas", { class: `pix plane-${names[axis]}`, "aria-label": `${title}, ${names[axis]}` });
      const redraw = () => {
        const k = Number(slider.value);
        const p = plane(img, axis, k);
        draw(c, img, p);
        size(p, c);
        label.textContent = `${names[axis]} ${k + 1} / ${count}`;
      };
      slider.addEventListener("input", redraw);
      canvases.push(redraw);
      box.append(el("figure", { class: "slice-view" }, c, el("figcaption", {}, slider, " ", label)));
    }
  }
  const redraw = () => canvases.forEach((f) => f());
  redraw();
  return { node: box, redraw };
}

// ---------------------------------------------------------------- the cohort page
const S = {};  // the review's state

function decidedCount() { return S.flagged.filter((s) => s.state !== "held").length; }
function stateWords(s) {
  if (S.failed) return "withheld (cohort failed)";
  if (s.state === "held") return s.flags.length ? "held for review" : "held";
  if (s.state === "released") return s.flags.length ? "approved" : "released";
  const last = s.reviews.filter((r) => r.decision === "reject").pop();
  return last && last.reason_code ? `rejected: ${REASONS[last.reason_code] || last.reason_code}` : "rejected";
}

async function cohortPage(id) {
  let cohort;
  try {
    cohort = await api.get(`/cohorts/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 404 || e.status === 422) {
      $("#main").replaceChildren(el("h1", { text: "Not found" }),
        el("p", { id: "not-found", text: `No cohort ${id} that this key may see.` }),
        el("p", {}, el("a", { href: "/ui/", text: "Your cohorts" })));
      return;
    }
    throw e;
  }
  Object.assign(S, { cohort, id: cohort.id, canDecide: me.role === "reviewer" || me.role === "admin",
                     failed: cohort.verdict === "failed", focus: 0, selected: new Set(), anchor: null, undo: [],
                     tiles: new Map() });
  redrawers.clear();
  const main = $("#main");
  main.replaceChildren(el("h1", {}, "Cohort ", el("code", { text: cohort.id })),
    el("p", { class: "muted", text: `class ${cohort.class_name}, ${cohort.generator}, ${cohort.count} samples, `
                                     + `seed ${cohort.seed}, dataset ${cohort.dataset_id}, created ${when(cohort.created_at)}` }));
  if (cohort.status === "failed" || cohort.status === "cancelled") {
    const job = await api.get(`/jobs/${encodeURIComponent(cohort.job_id)}`).catch(() => null);
    main.append(el("p", { id: "cohort-status", class: "bad",
      text: `This cohort is ${cohort.status}${job && job.error ? `: ${job.error}` : ""}. Nothing was validated or released.` }));
    return undefined;
  }
  if (cohort.status !== "ready") return waitForCohort(cohort);
  let report = {};
  try { report = await api.get(`/cohorts/${encodeURIComponent(id)}/report`); } catch (e) { status(e.message, "bad"); }
  S.report = report;
  S.details = report.details || {};
  const dataset = await api.get(`/datasets/${encodeURIComponent(cohort.dataset_id)}`).catch(() => null);
  S.modality = dataset ? dataset.modality : "";
  S.samples = await api.all(`/cohorts/${encodeURIComponent(id)}/samples`);
  S.flagged = S.samples.filter((s) => s.flags.length);
  S.grid = S.failed ? S.samples : S.flagged;  // a failed cohort shows every sample it withholds
  main.append(verdictSection(), reviewSection(), releaseSection(), auditSection(), metricsSection(),
    picturesSection(), utilitySection());
  renderGrid();
  renderDetail();
  await Promise.all([refreshAudit(), refreshRelease(), loadPictures(), loadTiles()]);
}

function waitForCohort(cohort) {
  // The cohort's own job shows percent, stage and ETA to its owner (and admins); anyone who may
  // see the cohort sees its status change. Either way the page turns into the review when ready.
  const row = jobRow({ id: cohort.job_id, kind: "cohort", target_id: cohort.id });
  $("#main").append(el("p", { id: "cohort-status", text: `This cohort is ${cohort.status}; the page shows its review once it is validated.` }),
    el("table", { id: "jobs" }, row));
  row.querySelector(".status").textContent = cohort.status;
  const poll = async () => {
    try {
      const now = await api.get(`/cohorts/${encodeURIComponent(cohort.id)}`);
      if (["ready", "failed", "cancelled"].includes(now.status)) { route(); return; }
      row.querySelector(".status").textContent = now.status;
      const job = await api.get(`/jobs/${encodeURIComponent(cohort.job_id)}`).catch(() => null);
      if (job) updateJobRow(row, job);
    } catch (e) { status(e.message, "bad"); }
    pollTimer = setTimeout(poll, 2000);
  };
  pollTimer = setTimeout(poll, 1000);
}

function verdictSection() {
  const c = S.cohort;
  const ex = S.details.explanation;
  const reasons = ex ? ex.reasons : c.reasons;
  return el("section", { id: "verdict-section" },
    el("h2", {}, "Verdict ", el("span", { id: "verdict", class: `verdict ${c.verdict}`, text: (c.verdict || "").replace("_", " ") })),
    ex ? el("p", { id: "summary", class: "summary", text: ex.summary }) : null,
    el("ul", { id: "reasons" }, reasons.map((r) => el("li", { text: r }))),
    el("h3", { text: "What to do next" }), el("ul", { id: "next-steps" }),
    ex ? el("details", {}, el("summary", { text: "The reasons as recorded" }),
      el("ul", {}, c.reasons.map((r) => el("li", { text: r })))) : null);
}

function renderNextSteps() {
  const box = $("#next-steps");
  if (!box) return;
  const steps = [];
  const held = S.flagged.filter((s) => s.state === "held").length;
  if (S.failed) {
    steps.push(...((S.details.explanation || {}).next_steps || ["Train longer or try another generator, then request a new cohort."]));
  } else if (held && S.canDecide) {
    steps.push(`Review the ${held} held sample${held > 1 ? "s" : ""} below: approve (A) or reject (R) each; `
      + "? shows every key.");
  } else if (held) {
    steps.push(`${held} sample${held > 1 ? "s wait" : " waits"} for a reviewer; ask one to look at this page.`
      + (S.cohort.released ? ` The ${S.cohort.released} released sample${S.cohort.released > 1 ? "s" : ""} `
        + "can be downloaded now." : ""));
  } else {
    steps.push("Every flagged sample is decided: download the released samples below, or load them with CohortDataset.");
  }
  box.replaceChildren(...steps.map((s) => el("li", { text: s })));
}

// ----- review: toolbar, grid, detail
function reviewSection() {
  const zoom = el("input", { id: "zoom", type: "range", min: 48, max: 384, step: 16, value: view.zoom, "aria-label": "grid zoom" });
  zoom.addEventListener("input", () => { view.zoom = Number(zoom.value); $("#grid").style.setProperty("--tile", `${view.zoom}px`); });
  const detailZoom = el("input", { id: "detail-zoom", type: "range", min: 64, max: 768, step: 32, value: view.detail, "aria-label": "detail zoom" });
  detailZoom.addEventListener("input", () => { view.detail = Number(detailZoom.value); redrawAll(); });
  const win = el("input", { id: "window", type: "range", min: 1, max: 100, value: Math.round(view.window * 100), "aria-label": "window" });
  const lev = el("input", { id: "level", type: "range", min: 0, max: 100, value: Math.round(view.level * 100), "aria-label": "level" });
  const wlText = el("span", { class: "muted" });
  const wl = () => {
    view.window = Number(win.value) / 100;
    view.level = Number(lev.value) / 100;
    wlText.textContent = `window ${win.value}%, level ${lev.value}% of the stored range`;
    redrawAll();
  };
  win.addEventListener("input", wl);
  lev.addEventListener("input", wl);
  const wlReset = el("button", { type: "button", text: "Full range", onclick: () => { win.value = 100; lev.value = 50; wl(); } });
  const mask = el("input", { id: "mask-overlay", type: "checkbox", checked: view.mask });
  mask.addEventListener("change", () => { view.mask = mask.checked; redrawAll(); });
  wlText.textContent = `window ${win.value}%, level ${lev.value}% of the stored range`;
  const ctMr = /^(CT|MR|MRI)$/i.test(S.modality);
  const title = S.failed ? "Samples withheld (cohort failed)" : "Flagged samples";
  return el("section", { id: "review" },
    el("h2", { text: title }),
    el("p", { id: "progress", class: "progress" }),
    S.failed ? el("p", { class: "bad", id: "withheld-note",
      text: "The cohort failed validation: every sample is withheld (cohort failed), and no review can release one." }) : null,
    !S.canDecide && !S.failed ? el("p", { class: "muted", id: "read-only",
      text: `You see this cohort as a ${me.role}: a reviewer or an admin decides on held samples.` }) : null,
    el("div", { class: "toolbar" },
      el("label", {}, "Grid zoom ", zoom), el("label", {}, "Detail zoom ", detailZoom),
      el("span", { class: ctMr ? "wl" : "wl muted" }, el("label", {}, "Window ", win), el("label", {}, " Level ", lev), " ", wlReset, " ", wlText),
      el("label", {}, mask, " mask overlay"),
      el("button", { type: "button", id: "help-button", text: "Keys (?)", onclick: toggleHelp })),
    el("div", { class: "review-body" },
      el("div", { id: "grid", class: "grid", role: "listbox", "aria-multiselectable": "true" }),
      el("div", { id: "detail", class: "detail" })));
}

function renderProgress() {
  const p = $("#progress");
  if (!p) return;
  if (S.failed) {
    p.textContent = `${S.samples.length} samples withheld (cohort failed); ${S.flagged.length} of them flagged.`;
  } else if (!S.flagged.length) {
    p.textContent = "No sample was flagged; there is nothing to review.";
  } else {
    const sel = S.selected.size > 1 ? ` · ${S.selected.size} selected` : "";
    p.textContent = `${decidedCount()} of ${S.flagged.length} decided${sel}`;
  }
  renderNextSteps();
}

function tileCaption(s) {
  const kinds = [...new Set(s.flags.map((f) => FLAG_WORDS[f.kind] || f.kind))].join(", ");
  return `#${s.index} · ${kinds || "not flagged"}`;
}

function renderGrid() {
  const grid = $("#grid");
  grid.style.setProperty("--tile", `${view.zoom}px`);
  const tiles = S.grid.map((s, pos) => {
    let t = S.tiles.get(s.index);
    if (!t) {
      const canvas = el("canvas", { class: "pix" });
      const placeholder = el("div", { class: "no-image",
        text: s.thumbnail_url ? "loading…" : "image shown to reviewers only" });
      const node = el("div", { class: "tile", role: "option", tabindex: -1, "data-index": s.index },
        placeholder, el("div", { class: "caption" }), el("div", { class: "state" }));
      node.addEventListener("click", (e) => clickTile(pos, e));
      t = { node, canvas, placeholder, img: null };
      S.tiles.set(s.index, t);
    }
    t.node.querySelector(".caption").textContent = tileCaption(s);
    t.node.querySelector(".state").textContent = stateWords(s);
    t.node.className = `tile state-${s.state}${pos === S.focus ? " focused" : ""}${S.selected.has(s.index) ? " selected" : ""}`;
    t.node.setAttribute("aria-selected", S.selected.has(s.index) ? "true" : "false");
    return t.node;
  });
  grid.replaceChildren(...tiles);
  if (!S.grid.length) grid.append(el("p", { class: "muted", text: "No flagged sample." }));
  renderProgress();
}

async function loadTiles() {
  const queue = S.grid.filter((s) => s.thumbnail_url);
  const worker = async () => {
    while (queue.length) {
      const s = queue.shift();
      const t = S.tiles.get(s.index);
      try {
        t.img = await decodePng(await api.blob(s.thumbnail_url.replace(/^\/v1/, "")));
        const redraw = () => draw(t.canvas, t.img, plane(t.img));
        redrawers.add(redraw);
        redraw();
        t.placeholder.replaceWith(t.canvas);
      } catch (e) {
        t.placeholder.textContent = `no image (${e.message})`;
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

function clickTile(pos, e) {
  const index = S.grid[pos].index;
  if (e.shiftKey && S.anchor !== null) {
    selectRange(S.anchor, pos);
  } else if (e.ctrlKey || e.metaKey) {
    if (S.selected.has(index)) S.selected.delete(index); else S.selected.add(index);
    S.anchor = pos;
  } else {
    S.selected = new Set([index]);
    S.anchor = pos;
  }
  setFocus(pos);
}

function selectRange(a, b) {
  const [lo, hi] = a <= b ? [a, b] : [b, a];
  S.selected = new Set(S.grid.slice(lo, hi + 1).map((s) => s.index));
}

function setFocus(pos) {
  if (!S.grid.length) return;
  S.focus = Math.max(0, Math.min(S.grid.length - 1, pos));
  renderGrid();
  renderDetail();
  const t = S.tiles.get(S.grid[S.focus].index);
  if (t) t.node.scrollIntoView({ block: "nearest" });
}

function move(step, extend) {
  if (!S.grid.length) return;
  const next = Math.max(0, Math.min(S.grid.length - 1, S.focus + step));
  if (extend) {
    if (S.anchor === null) S.anchor = S.focus;
    selectRange(S.anchor, next);
  } else {
    S.selected = new Set([S.grid[next].index]);
    S.anchor = next;
  }
  setFocus(next);
}

let detailToken = 0;
async function renderDetail() {
  const box = $("#detail");
  if (!box) return;
  const s = S.grid[S.focus];
  if (!s) { box.replaceChildren(); return; }
  const token = ++detailToken;
  const decide = S.canDecide && !S.failed;
  const targets = targetsOf();
  const many = targets.length > 1 ? ` (${targets.length})` : "";
  const buttons = decide ? el("div", { class: "buttons decide" },
    el("button", { type: "button", id: "approve", class: "approve", text: `Approve${many} (A)`, onclick: () => decideOn("approve") }),
    el("button", { type: "button", id: "reject", class: "reject", text: `Reject${many}… (R)`, onclick: () => openReject() }),
    el("button", { type: "button", id: "undo", text: "Undo (Z)", disabled: !S.undo.length, onclick: () => undo() }),
    s.state !== "held" ? el("button", { type: "button", id: "reset", text: "Reset to pending",
                                         onclick: () => resetSamples([s.index], true) }) : null) : null;
  const history = s.reviews.length ? el("ul", { class: "history" }, s.reviews.map((r) => el("li", {},
    `${when(r.created_at)}: ${r.reviewer_name} ${r.decision}`,
    r.reason_code ? ` (${REASONS[r.reason_code] || r.reason_code})` : "", r.reason ? ` — ${r.reason}` : ""))) : null;
  const imageBox = el("div", { class: "images" });
  box.replaceChildren(...[
    el("h3", {}, `Sample #${s.index} `, el("span", { class: `state-word state-${s.state}`, id: "detail-state", text: stateWords(s) })),
    el("p", { class: "muted" }, el("code", { text: s.file })),
    el("ul", { class: "flags" }, s.flags.map((f) => el("li", {}, el("b", { text: FLAG_WORDS[f.kind] || f.kind }),
      f.score === null || f.score === undefined ? `: ${f.reason}` : ` (score ${fmt(f.score)}): ${f.reason}`))),
    buttons, imageBox, history].filter(Boolean));
  if (!s.thumbnail_url) {
    imageBox.append(el("p", { class: "muted", text: "The image of a held sample is shown to reviewers only (it may copy a patient)." }));
    return;
  }
  try {
    const img = decodeArray(await api.get(`/cohorts/${encodeURIComponent(S.id)}/samples/${s.index}/pixels`));
    if (token !== detailToken) return;
    const v = viewer(img, `sample ${s.index}`);
    redrawers.add(v.redraw);
    imageBox.append(el("figure", { class: "sample" }, v.node, el("figcaption", { text: "synthetic sample" })));
  } catch (e) {
    imageBox.append(el("p", { class: "bad", text: `image: ${e.message}` }));
  }
  if (!S.canDecide) return;
  try {
    const near = await api.get(`/cohorts/${encodeURIComponent(S.id)}/samples/${s.index}/nearest`);
    if (token !== detailToken) return;
    const figs = near.items.map((n) => {
      const v = viewer(decodeArray(n.image), `training image ${n.sample_id}`);
      redrawers.add(v.redraw);
      const measure = n.measure === "feature_distance" ? "feature distance" : "pixel correlation";
      const side = n.near_copy_when === "at_or_below" ? "≤" : "≥";
      const caption = `${n.space === "features" ? "Nearest in features" : "Most correlated in pixels"}: `
        + `${n.sample_id} — ${measure} ${fmt(n.value)}; a near copy at ${side} ${fmt(n.threshold)}`;
      return el("figure", { class: "neighbour", "data-space": n.space }, v.node, el("figcaption", { text: caption }));
    });
    const radius = near.outlier_radius !== null && near.outlier_radius !== undefined
      ? el("p", { class: "muted", text: `An outlier lies farther than ${fmt(near.outlier_radius)} (features) from every real image of the class.` }) : null;
    imageBox.append(...[el("div", { id: "nearest", class: "nearest" }, figs), radius].filter(Boolean));
  } catch (e) {
    imageBox.append(el("p", { class: "muted", text: `nearest training images: ${e.message}` }));
  }
}

// ----- deciding
function targetsOf() {
  const s = S.grid[S.focus];
  if (S.selected.size > 1) return S.grid.filter((x) => S.selected.has(x.index));
  return s ? [s] : [];
}

function replaceSample(updated) {
  for (const list of new Set([S.samples, S.flagged, S.grid])) {
    const i = list.findIndex((x) => x.index === updated.index);
    if (i >= 0) list[i] = updated;
  }
}

async function post(index, body) {
  const updated = await api.post(`/cohorts/${encodeURIComponent(S.id)}/samples/${index}/review`, body);
  replaceSample(updated);
  return updated;
}

let busy = false;
async function decideOn(decision, reasonCode, comment) {
  if (!S.canDecide || S.failed || busy) return;
  const targets = targetsOf().filter((s) => s.state === "held");
  if (!targets.length) {
    status("Already decided: press Z to undo your last decision, or use Reset to pending.", "bad");
    return;
  }
  busy = true;
  const done = [];
  try {
    for (const s of targets) {
      const body = { decision, reason: comment || "" };
      if (decision === "reject") body.reason_code = reasonCode;
      await post(s.index, body);
      done.push(s.index);
    }
    status(`${decision === "approve" ? "Approved" : "Rejected"} ${done.map((i) => `#${i}`).join(", ")}.`);
  } catch (e) {
    status(`Not saved: ${e.message}`, "bad");
  } finally {
    busy = false;
  }
  if (done.length) S.undo.push(done);
  const last = S.grid.findIndex((x) => x.index === done[done.length - 1]);
  S.selected = new Set();
  if (last >= 0 && last + 1 < S.grid.length) { S.anchor = last + 1; S.selected.add(S.grid[last + 1].index); setFocus(last + 1); } else setFocus(S.focus);
  await afterDecision();
}

async function resetSamples(indices, fromButton) {
  if (!S.canDecide || S.failed || busy) return;
  busy = true;
  const done = [];
  try {
    for (const index of indices) {
      const s = S.grid.find((x) => x.index === index);
      if (!s || s.state === "held") continue;
      await post(index, { decision: "reset", reason: fromButton ? "reset to pending" : "undo" });
      done.push(index);
    }
    status(`Back to pending: ${done.map((i) => `#${i}`).join(", ") || "nothing"}.`);
  } catch (e) {
    status(`Not undone: ${e.message}`, "bad");
  } finally {
    busy = false;
  }
  const first = S.grid.findIndex((x) => x.index === (done[0] ?? indices[0]));
  if (first >= 0) { S.selected = new Set(done); S.anchor = first; setFocus(first); }
  await afterDecision();
}

async function undo() {
  const last = S.undo.pop();
  if (!last) { status("Nothing to undo in this visit."); return; }
  await resetSamples(last, false);
}

async function afterDecision() {
  try {
    S.cohort = await api.get(`/cohorts/${encodeURIComponent(S.id)}`);
  } catch (e) { status(e.message, "bad"); }
  renderProgress();
  await Promise.all([refreshAudit(), refreshRelease()]);
}

function openReject() {
  if (!S.canDecide || S.failed) return;
  const targets = targetsOf().filter((s) => s.state === "held");
  if (!targets.length) { status("Already decided: press Z to undo your last decision, or use Reset to pending.", "bad"); return; }
  const dialog = $("#reason-dialog");
  const form = $("#reason-form");
  form.reset();
  $("#reason-error").textContent = "";
  $("#reason-count").textContent = targets.length > 1 ? `${targets.length} samples` : `sample #${targets[0].index}`;
  const near = targets.every((s) => s.flags.some((f) => f.kind === "near_copy"));
  const broken = targets.every((s) => s.flags.some((f) => f.kind === "broken"));
  const guess = near ? "near_copy" : broken ? "artefact" : null;
  if (guess) form.querySelector(`input[value="${guess}"]`).checked = true;
  dialog.showModal();
}

function confirmReject(e) {
  e.preventDefault();
  const form = $("#reason-form");
  const picked = form.querySelector("input[name=reason_code]:checked");
  const comment = $("#reason-comment").value.trim();
  if (!picked) { $("#reason-error").textContent = "Pick a reason (1–5)."; return; }
  if (picked.value === "other" && !comment) { $("#reason-error").textContent = "Say why in the comment."; return; }
  $("#reason-dialog").close();
  decideOn("reject", picked.value, comment);
}

function reasonKeys(e) {
  const n = Number(e.key);
  if (e.target.id === "reason-comment") return;
  if (n >= 1 && n <= 5) {
    $("#reason-form").querySelector(`input[value="${REASON_KEYS[n - 1]}"]`).checked = true;
    e.preventDefault();
  } else if (e.key === "Enter") {
    confirmReject(e);
  }
}

function toggleHelp() {
  const help = $("#help");
  if (help.open) help.close(); else help.showModal();
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if ($("#reason-dialog").open) return;  // the dialog has its own keys
  if (e.key === "?") { toggleHelp(); e.preventDefault(); return; }
  if ($("#help").open) return;
  if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
  if (!S.grid || !$("#grid")) return;
  const k = e.key;
  if (k === "j" || k === "J" || k === "ArrowRight" || k === "ArrowDown") move(1, e.shiftKey);
  else if (k === "k" || k === "K" || k === "ArrowLeft" || k === "ArrowUp") move(-1, e.shiftKey);
  else if ((k === "a" || k === "A") && S.canDecide && !S.failed) decideOn("approve");
  else if ((k === "r" || k === "R") && S.canDecide && !S.failed) openReject();
  else if ((k === "z" || k === "Z") && S.canDecide && !S.failed) undo();
  else return;
  e.preventDefault();
}

// ----- audit trail
function auditSection() {
  return el("section", { id: "audit-section" }, el("h2", { text: "Audit trail" }),
    el("table", { id: "audit" }, el("thead", {}, el("tr", {}, ["when", "who", "sample", "decision", "reason", "comment"].map((h) => el("th", { text: h })))),
      el("tbody", {})));
}

async function refreshAudit() {
  const body = $("#audit tbody");
  if (!body) return;
  const reviews = await api.all(`/cohorts/${encodeURIComponent(S.id)}/reviews`).catch((e) => { status(e.message, "bad"); return []; });
  body.replaceChildren(...reviews.map((r) => el("tr", { "data-review": r.id },
    el("td", { text: when(r.created_at) }), el("td", { text: r.reviewer_name }), el("td", { text: `#${r.index}` }),
    el("td", { class: "decision", text: r.decision }), el("td", { text: r.reason_code ? (REASONS[r.reason_code] || r.reason_code) : "" }),
    el("td", { text: r.reason }))));
  if (!reviews.length) body.append(el("tr", {}, el("td", { colspan: 6, class: "muted", text: "No decision yet." })));
}

// ----- release: download and the Python that loads it
function releaseSection() {
  return el("section", { id: "release" }, el("h2", { text: "Released samples" }), el("div", { id: "release-body" }));
}

function refreshRelease() {
  const box = $("#release-body");
  if (!box) return;
  const c = S.cohort;
  if (S.failed) {
    box.replaceChildren(el("p", { text: "Nothing is released: the cohort failed validation." }));
    return;
  }
  if (!c.released) {
    box.replaceChildren(el("p", { text: "No sample is released yet." }));
    return;
  }
  const format = el("select", { id: "download-format", "aria-label": "format" },
    ["png", "nifti", "dicom", "npz"].map((f) => el("option", { value: f, selected: f === c.format, text: f })));
  const button = el("button", { type: "button", id: "download",
                                 text: `Download ${c.released} released sample${c.released > 1 ? "s" : ""} (zip)` });
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const r = await api.request("GET", `/cohorts/${encodeURIComponent(c.id)}/download?format=${format.value}&archive=zip`);
      const name = (/filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "") || [])[1] || `${c.id}.zip`;
      const url = URL.createObjectURL(await r.blob());
      const a = el("a", { href: url, download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      status(`Downloaded ${name}.`);
    } catch (e) {
      status(`Download failed: ${e.message}`, "bad");
    } finally {
      button.disabled = false;
    }
  });
  const python = `from synthcohort import Client, CohortDataset\n`
    + `ds = CohortDataset("${c.id}", client=Client("${location.origin}"))  # key from SYNTHCOHORT_API_KEY`;
  box.replaceChildren(el("p", {}, format, " ", button),
    el("p", { text: "Or load them into a training job (checksums verified, cached; the key comes from the environment):" }),
    el("pre", { id: "python" }, el("code", { text: python })));
}

// ----- metrics, pictures, utility
function metricRow(name, m) {
  const gate = m.passed !== null && m.passed !== undefined;
  const result = !gate ? el("td", { class: "muted", text: "info" })
    : !m.threshold ? el("td", { class: "muted", text: "off" })  // a pass mark of 0 turns a gate off
      : el("td", { class: m.passed ? "ok" : "bad", text: m.passed ? "pass" : "fail" });
  const words = ((S.details.explanation || {}).gates || {})[name];
  const what = words ? el("td", {}, el("b", { text: words.title }), `: ${words.meaning}`,
    el("br"), el("span", { class: "muted", text: m.label || "" })) : el("td", { text: m.label || "" });
  const ci = m.ci ? `[${fmt(m.ci[0])}, ${fmt(m.ci[1])}]` : "—";
  return el("tr", { "data-metric": name }, el("td", {}, el("code", { text: name })), el("td", { text: fmt(m.value, 4) }),
    el("td", { text: ci }), el("td", { text: m.threshold === null || m.threshold === undefined ? "—" : `≥ ${fmt(m.threshold)}` }),
    result, what);
}

function metricsSection() {
  const metrics = (S.report && S.report.metrics) || S.cohort.metrics || {};
  const names = Object.keys(metrics).filter((n) => !(n.startsWith("utility_") && n !== "utility_gain_minority_recall"));
  const gated = names.filter((n) => metrics[n].passed !== null && metrics[n].passed !== undefined);
  const info = names.filter((n) => !gated.includes(n));
  const head = () => el("tr", {}, ["metric", "value", "95% CI", "pass mark", "result", "what"].map((h) => el("th", { text: h })));
  return el("section", { id: "metrics" }, el("h2", { text: "Metrics" }),
    el("p", { class: "muted", text: "The gates decide the verdict; the informational metrics help to read them." }),
    el("table", { id: "metrics-gated" }, head(), gated.map((n) => metricRow(n, metrics[n]))),
    info.length ? el("details", { id: "metrics-info" }, el("summary", { text: `Informational metrics (${info.length}), not gates` }),
      el("table", {}, head(), info.map((n) => metricRow(n, metrics[n])))) : null);
}

function picturesSection() {
  return el("section", { id: "pictures" }, el("h2", { text: "Pictures" }), el("div", { class: "pictures" }));
}

async function loadPictures() {
  const box = $("#pictures .pictures");
  const names = S.details.pictures || [];
  const captions = S.details.captions || {};
  if (!names.length) { box.append(el("p", { class: "muted", text: "No picture in this report." })); return; }
  const order = ["tsne.png", "spread.png", "grid_real.png", "grid_synthetic.png", "ortho_real.png", "ortho_synthetic.png"];
  for (const name of names.slice().sort((a, b) => order.indexOf(a) - order.indexOf(b))) {
    const fig = el("figure", { "data-picture": name });
    box.append(fig);
    try {
      const url = URL.createObjectURL(await api.blob(`/cohorts/${encodeURIComponent(S.id)}/report/${name}`));
      fig.append(el("img", { class: "pix", src: url, alt: name }));
    } catch (e) {
      fig.append(el("p", { class: "muted", text: e.status === 403
        ? `${name}: shows real training images, for reviewers and whoever uploaded the data set.` : `${name}: ${e.message}` }));
    }
    fig.append(el("figcaption", { text: captions[name] || name }));
  }
}

function utilitySection() {
  const util = S.details.utility;
  const sec = el("section", { id: "utility" }, el("h2", { text: "Downstream utility (real test split)" }));
  if (!util) { sec.append(el("p", { class: "muted", text: "Not computed for this cohort." })); return sec; }
  const saturated = S.details.utility_saturated || [];
  if (saturated.length) {
    sec.append(el("p", { id: "utility-saturated", class: "note",
      text: `Saturated: every arm reaches 1.0 on ${saturated.join(", ")}, even without synthetic images, so this `
        + "test cannot show whether the synthetic images help." }));
  }
  const columns = { minority_recall: "minority recall", balanced_accuracy: "balanced accuracy", auroc: "AUROC",
    auprc: "AUPRC", specificity: "specificity", recall_at_ref_specificity: "recall at ref. specificity" };
  const metrics = Object.keys(columns).filter((m) => Object.values(util).some((r) => m in r.values));
  sec.append(el("table", {}, el("tr", {}, ["arm", "added", ...metrics.map((m) => columns[m])].map((h) => el("th", { text: h }))),
    Object.entries(util).map(([arm, r]) => el("tr", {}, el("td", { text: arm }), el("td", { text: r.n_added }),
      metrics.map((m) => el("td", { text: fmt(r.values[m]) }))))));
  if (S.details.utility_classifier) {
    sec.append(el("p", { class: "muted", text: `Classifier: ${S.details.utility_classifier}. Recall at ref. specificity: `
      + "the minority recall where the arm without augmentation has its specificity." }));
  }
  return sec;
}

// ---------------------------------------------------------------- start
document.addEventListener("DOMContentLoaded", () => {
  $("#sign-out").addEventListener("click", () => signOut("Signed out."));
  $("#reason-form").addEventListener("submit", confirmReject);
  $("#reason-form").addEventListener("keydown", reasonKeys);
  $("#reason-cancel").addEventListener("click", () => $("#reason-dialog").close());
  $("#help-close").addEventListener("click", () => $("#help").close());
  document.addEventListener("keydown", onKey);
  route();
});
