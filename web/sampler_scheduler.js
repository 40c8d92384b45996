// Sampler Scheduler: schedule preview on the pack's nodes (ComfyUI frontend extension).
//
// Draws, on the KSampler, Solver Mix and AYS Sigmas nodes, the sigma schedule on a log axis with
// each step coloured by the method the plan gives it, the segment boundaries and the total NFE.
// The numbers come from the backend (POST /sampler_scheduler/preview, the same function the nodes
// run), so what is drawn is what will run. A bad plan shows the backend's message instead of the
// plot. "Export plan" / "Import plan" (node menu and buttons) convert through
// POST /sampler_scheduler/plan; the import dialog also offers the plans the Search node saved
// (GET /sampler_scheduler/plans). User and server text is only ever set with textContent, form values
// or canvas fillText, never as HTML.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXTENSION = "SamplerScheduler.preview";
const PREVIEW_ROUTE = "/sampler_scheduler/preview";
const PLAN_ROUTE = "/sampler_scheduler/plan";
const OPTIONS_ROUTE = "/sampler_scheduler/options";
const PLANS_ROUTE = "/sampler_scheduler/plans";
const DEBOUNCE_MS = 250;
const POLL_MS = 200;
const MIN_HEIGHT = 190;
const MODEL_PROPERTY = "ss_preview_model";
const STEPS_PROPERTY = "ss_preview_steps"; // Solver Mix without a preview_steps widget
const DEFAULT_PREVIEW_STEPS = 20;
const DEFAULT_MODEL_TYPES = ["sd1", "sdxl", "flow", "flux"];
const SOLVER_MIX_SCHEDULER = "normal";
const PALETTE = ["#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#4db6ac", "#f06292",
  "#a1887f", "#90a4ae", "#aed581", "#7986cb"];

// Which widgets feed the preview, per node type.
const NODE_KINDS = {
  SamplerSchedulerKSampler: "ksampler",
  SamplerSchedulerSolverMix: "solver_mix",
  SamplerSchedulerAYSSigmas: "ays",
};

const trackedNodes = new Set();
const methodColours = new Map();
let modelTypes = DEFAULT_MODEL_TYPES.slice();
let pollTimer = null;

function methodColour(method) {
  if (!methodColours.has(method)) {
    methodColours.set(method, PALETTE[methodColours.size % PALETTE.length]);
  }
  return methodColours.get(method);
}

function widgetValue(node, name, fallback) {
  const w = node.widgets?.find((x) => x.name === name);
  return w === undefined || w.value === undefined || w.value === null ? fallback : w.value;
}

function isInputLinked(node, name) {
  const input = node.inputs?.find((x) => x.name === name);
  return input !== undefined && input.link !== null && input.link !== undefined;
}

function el(tag, style, text) {
  const e = document.createElement(tag);
  if (style) e.style.cssText = style;
  if (text !== undefined) e.textContent = text;
  return e;
}

// ------------------------------------------------------------------------------------------ backend

async function postJson(route, body) {
  let resp;
  try {
    resp = await api.fetchApi(route, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    return { ok: false, data: { error: `preview unavailable: ${err?.message ?? err}` } };
  }
  let data;
  try {
    data = await resp.json();
  } catch {
    data = { error: `preview unavailable: the server answered ${resp.status} without JSON` };
  }
  if (!resp.ok && typeof data?.error !== "string") {
    data = { error: `preview unavailable: the server answered ${resp.status}` };
  }
  return { ok: resp.ok, data };
}

async function loadOptions() {
  try {
    const resp = await api.fetchApi(OPTIONS_ROUTE);
    if (!resp.ok) return;
    const data = await resp.json();
    if (Array.isArray(data?.model_types) && data.model_types.every((t) => typeof t === "string")) {
      modelTypes = data.model_types;
      for (const node of trackedNodes) node.ssPreviewState?.fillModelSelect();
    }
  } catch {
    // keep the defaults; the preview requests themselves report a missing backend
  }
}

// ------------------------------------------------------------------------------------------ request

function previewModelType(node) {
  // a workflow saved by another version may name a model type this backend does not offer: fall back
  const stored = node.properties?.[MODEL_PROPERTY];
  return modelTypes.includes(stored) ? stored : modelTypes[0];
}

function finiteOr(value, fallback) {
  const n = Number(value);
  return Number.isFinite(n) ? n : fallback;
}

function previewRequest(node) {
  const kind = NODE_KINDS[node.comfyClass];
  const modelType = previewModelType(node);
  if (kind === "ksampler") {
    const source = sigmasSource(node);
    if (source?.comfyClass === "SamplerSchedulerAYSSigmas") {
      // The run uses the AYS node's sigmas: preview exactly those, with this node's plan.
      return { ...previewRequest(source), plan: String(widgetValue(node, "plan", "")), model_type: modelType };
    }
    return {
      plan: String(widgetValue(node, "plan", "")),
      steps: Number(widgetValue(node, "steps", 20)),
      denoise: Number(widgetValue(node, "denoise", 1.0)),
      scheduler: String(widgetValue(node, "scheduler", "normal")),
      model_type: modelType,
    };
  }
  if (kind === "solver_mix") {
    return {
      plan: String(widgetValue(node, "plan", "")),
      steps: finiteOr(widgetValue(node, "preview_steps", node.properties?.[STEPS_PROPERTY]), DEFAULT_PREVIEW_STEPS),
      denoise: 1.0,
      scheduler: SOLVER_MIX_SCHEDULER,
      model_type: modelType,
    };
  }
  return {
    plan: null,
    steps: Number(widgetValue(node, "steps", 10)),
    denoise: Number(widgetValue(node, "denoise", 1.0)),
    preset: String(widgetValue(node, "preset", "auto")),
    model_type: modelType,
  };
}

function sigmasSource(node) {
  if (!isInputLinked(node, "sigmas")) return null;
  const slot = node.inputs.findIndex((x) => x.name === "sigmas");
  return node.getInputNode?.(slot) ?? null;
}

const PREVIEWED_WIDGETS = ["plan", "steps", "denoise", "scheduler", "preset", "preview_steps"];

function linkedWidgets(node) {
  // widgets converted to inputs and connected: the run uses the linked values, the preview the widget's own
  return PREVIEWED_WIDGETS.filter((name) => node.widgets?.some((w) => w.name === name) && isInputLinked(node, name));
}

function noteFor(node) {
  const kind = NODE_KINDS[node.comfyClass];
  const linked = linkedWidgets(node);
  const linkNote = linked.length ? `; ${linked.join(", ")} connected: shown with the widget value(s), the run uses `
    + "the connected one(s)" : "";
  if (kind === "ksampler" && isInputLinked(node, "sigmas")) {
    if (sigmasSource(node)?.comfyClass === "SamplerSchedulerAYSSigmas") {
      return "sigmas from the connected Align Your Steps node" + linkNote;
    }
    return "SIGMAS input connected: the run uses those sigmas; shown: steps/scheduler/denoise" + linkNote;
  }
  if (kind === "solver_mix") {
    return `preview with the ${SOLVER_MIX_SCHEDULER} scheduler; the run uses the SIGMAS it is given` + linkNote;
  }
  return linkNote.replace(/^; /, "");
}

// ------------------------------------------------------------------------------------------ drawing

function fmtSigma(v) {
  if (v === 0) return "0";
  if (v >= 100) return v.toFixed(0);
  if (v >= 1) return v.toPrecision(3).replace(/\.?0+$/, "");
  return String(Number(v.toPrecision(2)));
}

function drawPlot(canvas, preview) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(canvas.clientWidth, 10);
  const h = Math.max(canvas.clientHeight, 10);
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#1b1b1b";
  ctx.fillRect(0, 0, w, h);
  const sigmas = preview?.sigmas ?? [];
  const methods = preview?.methods ?? [];
  ctx.font = "10px sans-serif";
  if (sigmas.length < 2) {
    ctx.fillStyle = "#aaa";
    ctx.fillText(sigmas.length ? "no steps to run (denoise leaves none)" : "no schedule", 8, 16);
    return;
  }
  const n = sigmas.length - 1;
  const positive = sigmas.filter((s) => s > 0);
  const hasZero = positive.length < sigmas.length;
  let lo = Math.log10(Math.min(...positive));
  let hi = Math.log10(Math.max(...positive));
  if (hi - lo < 0.1) { lo -= 0.05; hi += 0.05; }
  const pad = (hi - lo) * 0.06;
  lo -= pad; hi += pad;
  const left = 40, right = 8, top = 20, bottom = hasZero ? 30 : 22;
  const pw = w - left - right, ph = h - top - bottom;
  const zeroY = top + ph + (hasZero ? 10 : 0);
  const X = (i) => left + (pw * i) / n;
  const Y = (s) => (s > 0 ? top + ph * (1 - (Math.log10(s) - lo) / (hi - lo)) : zeroY);

  // axes and decade grid
  ctx.strokeStyle = "#333";
  ctx.fillStyle = "#999";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const ticks = [];
  for (let k = Math.ceil(lo); k <= Math.floor(hi); k++) ticks.push(10 ** k);
  if (ticks.length < 2) ticks.push(Math.max(...positive), Math.min(...positive));
  for (const t of ticks) {
    const y = Y(t);
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + pw, y); ctx.stroke();
    ctx.fillText(fmtSigma(t), left - 4, y);
  }
  if (hasZero) ctx.fillText("0", left - 4, zeroY);
  ctx.strokeStyle = "#666";
  ctx.beginPath(); ctx.moveTo(left, top); ctx.lineTo(left, zeroY); ctx.lineTo(left + pw, zeroY); ctx.stroke();
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const xTicks = new Set([0, n]);
  for (const seg of preview.segments ?? []) if (seg[0] > 0 && seg[0] < n) xTicks.add(seg[0]);
  for (const i of xTicks) ctx.fillText(String(i), X(i), zeroY + 3);

  // segment boundaries
  ctx.setLineDash([3, 3]);
  ctx.strokeStyle = "#bbb";
  for (const seg of preview.segments ?? []) {
    if (seg[0] > 0 && seg[0] < n && seg[1] > seg[0]) {
      ctx.beginPath(); ctx.moveTo(X(seg[0]), top); ctx.lineTo(X(seg[0]), zeroY); ctx.stroke();
    }
  }
  ctx.setLineDash([]);

  // steps, coloured by method
  ctx.lineWidth = 2.5;
  for (let i = 0; i < n; i++) {
    ctx.strokeStyle = methodColour(methods[i] ?? "?");
    ctx.beginPath(); ctx.moveTo(X(i), Y(sigmas[i])); ctx.lineTo(X(i + 1), Y(sigmas[i + 1])); ctx.stroke();
  }
  for (let i = 0; i <= n; i++) {
    ctx.fillStyle = methodColour(methods[Math.min(i, n - 1)] ?? "?");
    ctx.beginPath(); ctx.arc(X(i), Y(sigmas[i]), n > 60 ? 1.2 : 2.2, 0, 2 * Math.PI); ctx.fill();
  }

  // legend (top) and NFE (top right)
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  ctx.font = "bold 11px sans-serif";
  const nfeText = `NFE ${preview.nfe}`;
  const nfeWidth = ctx.measureText(nfeText).width;
  ctx.fillStyle = "#fff";
  ctx.fillText(nfeText, w - right - nfeWidth, 9);
  ctx.font = "10px sans-serif";
  let lx = left;
  const seen = [];
  for (const m of methods) if (!seen.includes(m)) seen.push(m);
  for (const m of seen) {
    const label = m;
    const tw = ctx.measureText(label).width;
    if (lx + 12 + tw > w - right - nfeWidth - 8) break;
    ctx.fillStyle = methodColour(m);
    ctx.fillRect(lx, 5, 8, 8);
    ctx.fillStyle = "#ddd";
    ctx.fillText(label, lx + 11, 9);
    lx += 11 + tw + 10;
  }
}

// ------------------------------------------------------------------------------------------ dialogs

function openDialog({ title, text, readOnly, okLabel, onOk }) {
  const overlay = el("div", "position:fixed;inset:0;background:rgba(0,0,0,.45);z-index:10000;display:flex;"
    + "align-items:center;justify-content:center;");
  overlay.className = "ss-plan-dialog";
  const box = el("div", "background:#222;color:#ddd;border:1px solid #555;border-radius:6px;padding:12px;"
    + "width:min(560px,90vw);font:12px sans-serif;display:flex;flex-direction:column;gap:8px;");
  box.append(el("div", "font-weight:bold;font-size:13px;", title));
  const area = document.createElement("textarea");
  area.className = "ss-plan-dialog-text";
  area.style.cssText = "height:220px;background:#111;color:#eee;border:1px solid #444;font:12px monospace;";
  area.value = text ?? "";
  area.readOnly = !!readOnly;
  area.spellcheck = false;
  const status = el("div", "color:#ff8a80;white-space:pre-wrap;min-height:1em;");
  status.className = "ss-plan-dialog-status";
  const buttons = el("div", "display:flex;gap:8px;justify-content:flex-end;");
  const onKey = (e) => {
    const open = document.querySelectorAll(".ss-plan-dialog");
    if (e.key === "Escape" && open[open.length - 1] === overlay) { // the topmost dialog only
      e.stopPropagation();
      close();
    }
  };
  const close = () => {
    document.removeEventListener("keydown", onKey, true);
    overlay.remove();
  };
  document.addEventListener("keydown", onKey, true);
  const cancel = el("button", "", onOk ? "Cancel" : "Close");
  cancel.addEventListener("click", close);
  buttons.append(cancel);
  if (onOk) {
    const ok = el("button", "", okLabel ?? "OK");
    ok.className = "ss-plan-dialog-ok";
    ok.addEventListener("click", async () => {
      ok.disabled = true;
      const error = await onOk(area.value);
      ok.disabled = false;
      if (error) status.textContent = error;
      else close();
    });
    buttons.append(ok);
  }
  // close on a click on the backdrop, not at the end of a text selection dragged out of the box
  let pressedOnBackdrop = false;
  overlay.addEventListener("mousedown", (e) => { pressedOnBackdrop = e.target === overlay; });
  overlay.addEventListener("click", (e) => { if (e.target === overlay && pressedOnBackdrop) close(); });
  box.append(area, status, buttons);
  overlay.append(box);
  document.body.append(overlay);
  area.focus();
  if (readOnly) area.select();
  return { overlay, area, status };
}

async function exportPlan(node) {
  const { ok, data } = await postJson(PLAN_ROUTE, { plan: String(widgetValue(node, "plan", "")) });
  if (!ok) return { error: data.error };
  return { json: data.plan_json, text: data.plan_text };
}

async function importPlan(node, pasted) {
  const { ok, data } = await postJson(PLAN_ROUTE, { plan: pasted });
  if (!ok) return data.error;
  const widget = node.widgets?.find((w) => w.name === "plan");
  if (!widget) return "this node has no plan";
  // Text is kept as written (comments included); JSON becomes the canonical plan text.
  widget.value = pasted.trimStart().startsWith("{") ? data.plan_text : pasted;
  widget.callback?.(widget.value);
  node.ssPreviewState?.schedule(0);
  app.graph?.setDirtyCanvas(true, true);
  return null;
}

async function openExportDialog(node) {
  const result = await exportPlan(node);
  if (result.error) {
    const d = openDialog({ title: "Export plan", text: "" });
    d.status.textContent = result.error;
    return d;
  }
  const d = openDialog({ title: "Export plan (JSON)", text: result.json, readOnly: true });
  try {
    await navigator.clipboard.writeText(result.json);
    d.status.style.color = "#9ccc65";
    d.status.textContent = "Copied to the clipboard.";
  } catch {
    d.status.style.color = "#ccc";
    d.status.textContent = "Select the text and copy it (the clipboard is not available here).";
  }
  return d;
}

async function fetchSavedPlans() {
  try {
    const resp = await api.fetchApi(PLANS_ROUTE);
    const data = await resp.json();
    if (!resp.ok) return { plans: [], errors: [{ file: "", error: String(data?.error ?? resp.status) }] };
    return { plans: Array.isArray(data?.plans) ? data.plans : [], errors: Array.isArray(data?.errors) ? data.errors : [] };
  } catch (err) {
    return { plans: [], errors: [{ file: "", error: `saved plans unavailable: ${err?.message ?? err}` }] };
  }
}

// The plans the Search node saved, as a picker above the text box: picking one puts its plan text there.
async function addSavedPlanPicker(dialog) {
  const { plans, errors } = await fetchSavedPlans();
  if (!dialog.overlay.isConnected) return;
  if (plans.length) {
    const select = el("select", "background:#111;color:#eee;border:1px solid #444;font:12px sans-serif;");
    select.className = "ss-plan-dialog-saved";
    select.append(el("option", "", `Saved searched plans (${plans.length})...`));
    plans.forEach((p, i) => {
      const option = el("option", "", `${p.name}${p.nfe ? ` (NFE ${p.nfe})` : ""}`);
      option.value = String(i);
      select.append(option);
    });
    select.firstChild.value = "";
    select.addEventListener("change", () => {
      const plan = plans[Number(select.value)];
      if (select.value !== "" && plan) dialog.area.value = String(plan.plan ?? "");
    });
    dialog.area.before(select);
  }
  if (errors.length && !dialog.status.textContent) {  // never over an import error already shown
    dialog.status.textContent = errors.map((e) => e.error).join("\n");
  }
}

function openImportDialog(node) {
  const dialog = openDialog({
    title: "Import plan: paste plan JSON or plan text, or pick a saved searched plan",
    text: "",
    okLabel: "Import",
    onOk: (value) => importPlan(node, value),
  });
  dialog.savedPlans = addSavedPlanPicker(dialog);
  return dialog;
}

// ------------------------------------------------------------------------------------------ widget

function attachPreview(node) {
  const hasPlan = NODE_KINDS[node.comfyClass] !== "ays";
  const root = el("div", "display:flex;flex-direction:column;gap:3px;width:100%;height:100%;box-sizing:border-box;"
    + "font:11px sans-serif;color:#ccc;overflow:hidden;");
  root.className = "ss-preview";
  const header = el("div", "display:flex;gap:4px;align-items:center;flex:0 0 auto;");
  const summary = el("span", "flex:1 1 auto;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;");
  summary.className = "ss-preview-summary";
  const select = document.createElement("select");
  select.title = "Model type for the preview (the frontend cannot know the connected model)";
  select.style.cssText = "font:11px sans-serif;background:#222;color:#ddd;border:1px solid #555;";
  header.append(summary);
  let stepsInput = null;
  if (NODE_KINDS[node.comfyClass] === "solver_mix" && !node.widgets?.some((w) => w.name === "preview_steps")) {
    stepsInput = document.createElement("input");
    stepsInput.type = "number";
    stepsInput.min = "1";
    stepsInput.max = "1000";
    stepsInput.className = "ss-preview-steps";
    stepsInput.title = "Steps for the preview (the run uses the connected SIGMAS)";
    stepsInput.style.cssText = "width:4.5em;font:11px sans-serif;background:#222;color:#ddd;border:1px solid #555;";
    stepsInput.addEventListener("change", () => {
      const v = Math.round(Number(stepsInput.value));
      if (Number.isFinite(v) && v >= 1 && v <= 1000) {
        node.properties[STEPS_PROPERTY] = v;
        state.check();
      } else {
        stepsInput.value = String(node.properties[STEPS_PROPERTY] ?? DEFAULT_PREVIEW_STEPS);
      }
    });
    header.append(el("span", "", "steps"), stepsInput);
  }
  header.append(select);
  const buttonStyle = "font:11px sans-serif;padding:0 4px;background:#333;color:#ddd;border:1px solid #555;";
  if (hasPlan) {
    const exp = el("button", buttonStyle, "Export");
    exp.title = "Export the plan as JSON";
    exp.addEventListener("click", () => openExportDialog(node));
    const imp = el("button", buttonStyle, "Import");
    imp.title = "Import a plan (JSON or text)";
    imp.addEventListener("click", () => openImportDialog(node));
    header.append(exp, imp);
  }
  const canvas = el("canvas", "flex:1 1 auto;width:100%;min-height:0;display:block;");
  canvas.className = "ss-preview-canvas";
  const error = el("div", "flex:1 1 auto;display:none;color:#ff8a80;background:#2a1515;white-space:pre-wrap;"
    + "overflow:auto;padding:4px;font:11px monospace;");
  error.className = "ss-preview-error";
  const note = el("div", "flex:0 0 auto;color:#888;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;");
  root.append(header, canvas, error, note);

  const state = {
    key: null,
    seq: 0,
    schedule_text: "",
    timer: null,
    preview: { sigmas: [], methods: [], segments: [], nfe: null, error: null, updates: 0 },
    fillModelSelect() {
      if (stepsInput) stepsInput.value = String(finiteOr(node.properties?.[STEPS_PROPERTY], DEFAULT_PREVIEW_STEPS));
      const current = previewModelType(node);
      select.replaceChildren(...modelTypes.map((t) => {
        const o = document.createElement("option");
        o.value = t;
        o.textContent = t;
        return o;
      }));
      select.value = modelTypes.includes(current) ? current : modelTypes[0];
    },
    schedule(delay = DEBOUNCE_MS) {
      clearTimeout(state.timer);
      state.timer = setTimeout(() => state.refresh(), delay);
    },
    check() {
      if (!node.graph) return; // not (or no longer) in a graph: nothing to preview
      const request = previewRequest(node);
      const key = JSON.stringify(request);
      note.textContent = noteFor(node) || state.schedule_text;
      if (key !== state.key) {
        state.key = key;
        state.schedule();
      }
    },
    async refresh() {
      const request = previewRequest(node);
      state.key = JSON.stringify(request);
      const seq = ++state.seq;
      const { ok, data } = await postJson(PREVIEW_ROUTE, request);
      if (seq !== state.seq) return; // a newer request is on its way
      const p = state.preview;
      p.request = request;
      p.updates += 1;
      if (ok) {
        Object.assign(p, {
          sigmas: data.sigmas, methods: data.methods, segments: data.segments, nfe: data.nfe,
          schedule: data.schedule, steps: data.steps, model_type: data.model_type, error: null,
          line: null, token: null,
          colours: Object.fromEntries(data.methods.map((m) => [m, methodColour(m)])),
        });
        summary.textContent = `${data.steps} steps · NFE ${data.nfe}`;
        summary.title = `${summary.textContent} · ${data.schedule ?? ""}`;
        state.schedule_text = data.schedule ?? "";
        note.textContent = noteFor(node) || state.schedule_text;
        error.style.display = "none";
        canvas.style.display = "block";
        drawPlot(canvas, p);
      } else {
        Object.assign(p, { error: data.error, line: data.line ?? null, token: data.token ?? null });
        summary.textContent = "preview: error";
        summary.title = "";
        state.schedule_text = "";
        note.textContent = noteFor(node);
        error.textContent = data.error;
        error.style.display = "block";
        canvas.style.display = "none";
      }
      node.setDirtyCanvas?.(true, false);
    },
  };
  select.addEventListener("change", () => {
    node.properties = node.properties ?? {};
    node.properties[MODEL_PROPERTY] = select.value;
    state.check();
  });
  state.fillModelSelect();
  node.properties = node.properties ?? {};
  if (node.properties[MODEL_PROPERTY] === undefined) node.properties[MODEL_PROPERTY] = select.value;

  const widget = node.addDOMWidget("ss_preview", "ss_preview", root, {
    serialize: false,
    hideOnZoom: true,
    getMinHeight: () => MIN_HEIGHT,
    getValue: () => "",
    setValue: () => {},
  });
  widget.serialize = false;
  widget.ssPreview = state.preview;
  node.ssPreview = state.preview;
  node.ssPreviewState = state;
  node.ssExportPlan = () => exportPlan(node);
  node.ssImportPlan = (text) => importPlan(node, text);
  node.ssOpenExportDialog = () => openExportDialog(node);
  node.ssOpenImportDialog = () => openImportDialog(node);

  new ResizeObserver(() => {
    if (!state.preview.error && state.preview.sigmas.length) drawPlot(canvas, state.preview);
  }).observe(canvas);

  // Changes through the UI call widget callbacks: react at once (the poll catches the rest).
  for (const w of node.widgets ?? []) {
    if (w === widget) continue;
    const original = w.callback;
    w.callback = function (...args) {
      const r = original?.apply(this, args);
      state.check();
      return r;
    };
  }
  const onConfigure = node.onConfigure;
  node.onConfigure = function (...args) {
    const r = onConfigure?.apply(this, args);
    state.fillModelSelect();
    state.check();
    return r;
  };
  const onRemoved = node.onRemoved;
  node.onRemoved = function (...args) {
    trackedNodes.delete(node);
    clearTimeout(state.timer);
    return onRemoved?.apply(this, args);
  };
  const size = node.computeSize();
  // Room for the plot and a few plan lines (a loaded workflow restores its own size afterwards).
  node.setSize([Math.max(node.size[0], 400), Math.max(node.size[1], size[1]) + (hasPlan ? 80 : 0)]);
  trackedNodes.add(node);
  state.check();
  if (pollTimer === null) {
    pollTimer = setInterval(() => {
      for (const n of trackedNodes) n.ssPreviewState?.check();
    }, POLL_MS);
  }
}

// Search and AYS Optimiser: same seed, same result, minutes of work. The frontend gives every INT named "seed" a
// "control after generate" widget that starts at "randomize" (a new search after every queue); a new node of these
// starts at "fixed" instead. A loaded workflow sets the widget afterwards from its saved value (kept as saved).
const FIXED_SEED_NODES = ["SamplerSchedulerSearch", "SamplerSchedulerAYSOptimize"];

function fixSeedControl(node) {
  const seed = node.widgets?.find((w) => w.name === "seed");
  const control = seed?.linkedWidgets?.[0] ?? node.widgets?.find((w) => w.name === "control_after_generate");
  if (control && control.value === "randomize") control.value = "fixed";
}

app.registerExtension({
  name: EXTENSION,
  async setup() {
    await loadOptions();
  },
  async nodeCreated(node) {
    if (NODE_KINDS[node.comfyClass] !== undefined) attachPreview(node);
    if (FIXED_SEED_NODES.includes(node.comfyClass)) fixSeedControl(node);
  },
  getNodeMenuItems(node) {
    const kind = NODE_KINDS[node?.comfyClass];
    if (kind === undefined || kind === "ays") return [];
    return [
      null,
      { content: "Export plan (JSON)", callback: () => { openExportDialog(node); } },
      { content: "Import plan (JSON or text)", callback: () => { openImportDialog(node); } },
    ];
  },
});
