// memotion moderation dashboard: talks to the gateway's public API, nothing else.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "memotion.apiKey";

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

async function callApi(path, options) {
  const response = await fetch(path, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const error = (body && body.error) || { code: "http_" + response.status, message: response.statusText };
    const retry = response.headers.get("Retry-After");
    throw new Error(`${error.code} (${response.status}): ${error.message}` + (retry ? ` — retry after ${retry} s` : ""));
  }
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value; else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function pct(p) { return (100 * p).toFixed(1) + "%"; }

function bars(scores, chosen) {
  const box = el("div", { class: "bars" });
  for (const [label, score] of Object.entries(scores)) {
    const bar = el("div", { class: "bar" }, el("span"));
    bar.firstChild.style.width = pct(score);
    box.append(el("div", { class: "row" + (label === chosen ? " chosen" : ""), "data-label": label },
      el("span", {}, label), bar, el("span", {}, pct(score))));
  }
  return box;
}

// --- status ------------------------------------------------------------------------------------

async function refreshStatus() {
  try {
    const ready = await callApi("/readyz", {});
    $("status").textContent = `ready · model ${ready.model_version} · ${ready.backend} · OCR ${ready.ocr}`;
  } catch (err) {
    $("status").textContent = "not ready: " + err.message;
  }
}

// --- one meme ----------------------------------------------------------------------------------

let currentFile = null;

function showError(box, message) {
  box.textContent = message;
  box.hidden = false;
}

function render(result) {
  $("task-a-label").textContent = result.task_a.label;
  $("task-a-scores").replaceChildren(...bars(result.task_a.scores, result.task_a.label).childNodes);
  const chips = [];
  for (const [emotion, present] of Object.entries(result.task_b)) {
    const score = (result.task_b_scores || {})[emotion];
    const threshold = (result.thresholds || {})[emotion];
    chips.push(el("span", { class: "chip" + (present ? " on" : ""), "data-emotion": emotion },
      emotion + (score !== undefined ? " " + pct(score) : "") + (threshold !== undefined ? ` (≥ ${threshold})` : "")));
  }
  $("task-b").replaceChildren(...chips);
  const heads = [];
  for (const [head, prediction] of Object.entries(result.task_c)) {
    heads.push(el("div", { class: "head", "data-head": head },
      el("h3", {}, `${head}: ${prediction.label} (${prediction.code})`), bars(prediction.scores, prediction.label)));
  }
  $("task-c").replaceChildren(...heads);
  renderDecision(result.decision);
  $("ocr-text").textContent = result.text.value || "(no text)";
  $("text-source").textContent = result.text.source === "ocr" ? "read by OCR" : "sent with the request";
  $("language").textContent = result.language ? "language " + result.language : "";
  const steps = ((result.explain || {}).text_steps || []).map((step) =>
    el("li", {}, el("b", {}, step.step), " ", step.text || "(empty)",
      Object.keys(step.detail || {}).length ? " — " + JSON.stringify(step.detail) : ""));
  $("text-steps").replaceChildren(...steps);
  $("model-version").textContent = result.model_version;
  $("request-id").textContent = result.request_id || "";
  $("total-ms").textContent = Math.round(result.timings_ms.total || 0);
  $("notice").textContent = result.notice || "";
  $("notice").hidden = !result.notice;
  $("result").hidden = false;
}

function reasonItem(reason) {
  const label = reason.label ? ` ${reason.label}` : "";
  const score = reason.kind === "low_agreement" ? `agreement ${pct(reason.score)} < ${pct(reason.threshold)}`
    : `${pct(reason.score)} vs ${pct(reason.threshold)}`;
  return el("li", { class: "reason " + reason.action, "data-kind": reason.kind },
    el("b", {}, reason.action), ` ${reason.kind.replace("_", " ")}: ${reason.head}${label} ${score}`,
    reason.driven_by && reason.driven_by !== "none" ? ` · driven by ${reason.driven_by}` : "");
}

function renderDecision(decision) {
  $("decision").hidden = !decision;
  if (!decision) return;
  $("decision-action").textContent = decision.action;
  $("decision-action").className = "action " + decision.action;
  $("decision-policy").textContent = `policy ${decision.policy} v${decision.policy_version}` +
    (decision.review_id ? ` · queued #${decision.review_id}` : "") +
    (decision.repost_of ? ` · repost of #${decision.repost_of.review_id} (${decision.repost_of.decided_action})` : "");
  $("decision-reasons").replaceChildren(...(decision.reasons || []).map(reasonItem));
}

async function classifyCurrent() {
  if (!currentFile) return;
  $("error").hidden = true;
  $("busy").hidden = false;
  $("result").hidden = true;
  const form = new FormData();
  form.append("image", currentFile, currentFile.name);
  const text = $("text-input").value;
  if (text.trim()) form.append("text", text);
  const explain = $("explain").checked ? "?explain=true" : "";
  try {
    render(await callApi("/v1/classify" + explain, { method: "POST", body: form }));
  } catch (err) {
    showError($("error"), err.message);
  } finally {
    $("busy").hidden = true;
  }
}

function chooseFile(file) {
  if (!file) return;
  currentFile = file;
  const preview = $("preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("drop-hint").hidden = true;
  $("classify-button").disabled = false;
  classifyCurrent();
}

// --- batch -------------------------------------------------------------------------------------

let rows = [];

// The same flat record as `memotion score` writes (service/scoring/local.py: flatten_response).
function flatten(id, source, item) {
  if (item.status !== 200 || !item.result) {
    const error = item.error || {};
    return { id, source, status: "error", error_code: error.code, error_message: error.message };
  }
  const r = item.result;
  const row = { id, source, status: "ok", model_version: r.model_version, text: r.text.value,
                text_source: r.text.source, language: r.language,
                sentiment: r.task_a.label, sentiment_score: r.task_a.scores[r.task_a.label] };
  for (const [emotion, present] of Object.entries(r.task_b)) {
    row["b_" + emotion] = present;
    row["b_" + emotion + "_score"] = (r.task_b_scores || {})[emotion];
  }
  for (const [head, p] of Object.entries(r.task_c)) { row["c_" + head] = p.label; row["c_" + head + "_code"] = p.code; }
  return row;
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function classifyBatch(files) {
  $("batch-error").hidden = true;
  $("batch-summary").textContent = `classifying ${files.length} memes…`;
  try {
    const items = await Promise.all(Array.from(files).map(async (f) => ({ id: f.name, image: await readAsDataUrl(f) })));
    const answer = await callApi("/v1/classify/batch", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ items }) });
    showRows(answer.items.map((item) => flatten(item.id, item.id, item)));
  } catch (err) {
    $("batch-summary").textContent = "";
    showError($("batch-error"), err.message);
  }
}

async function openResults(file) {
  $("batch-error").hidden = true;
  const text = await file.text();
  const parsed = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    try { parsed.push(JSON.parse(lines[i])); } catch (e) {
      showError($("batch-error"), `line ${i + 1} of ${file.name} is not JSON; showing the others`);
    }
  }
  showRows(parsed);
}

function emotionsOf(row) {
  return Object.keys(row).filter((k) => k.startsWith("b_") && !k.endsWith("_score")).map((k) => k.slice(2));
}

function showRows(newRows) {
  rows = newRows.map((row, index) => ({ ...row, _index: index }));
  const sort = $("batch-sort");
  const scoreColumns = [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => k.endsWith("_score"))))];
  sort.replaceChildren(el("option", { value: "index" }, "order"),
    ...scoreColumns.map((c) => el("option", { value: c }, c.replace(/^b_/, "P(").replace(/_score$/, ")") + " ↓")));
  drawTable();
}

function drawTable() {
  const filter = $("batch-filter").value;
  const sortBy = $("batch-sort").value;
  let shown = rows.filter((row) => {
    if (filter === "errors") return row.status === "error";
    if (filter === "flagged") return emotionsOf(row).some((e) => row["b_" + e]);
    return true;
  });
  if (sortBy !== "index") shown = [...shown].sort((a, b) => (b[sortBy] ?? -1) - (a[sortBy] ?? -1));
  const heads = [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => k.startsWith("c_") && !k.endsWith("_code"))))];
  $("batch-table").tHead.replaceChildren(el("tr", {}, ...["#", "id", "sentiment", "emotions", ...heads.map((h) => h.slice(2)),
    "language", "text"].map((h) => el("th", {}, h))));
  const body = shown.map((row) => {
    if (row.status === "error") {
      return el("tr", { class: "row-error" }, el("td", {}, row._index + 1), el("td", {}, row.id),
        el("td", { class: "err", colspan: String(4 + heads.length) }, `${row.error_code}: ${row.error_message}`));
    }
    const flagged = emotionsOf(row).filter((e) => row["b_" + e]);
    return el("tr", { class: "row-ok" }, el("td", {}, row._index + 1), el("td", {}, row.id),
      el("td", {}, `${row.sentiment} (${pct(row.sentiment_score || 0)})`),
      el("td", { class: flagged.length ? "flag" : "" }, flagged.join(", ") || "—"),
      ...heads.map((h) => el("td", {}, row[h] ?? "")), el("td", {}, row.language || ""),
      el("td", { class: "text" }, row.text || ""));
  });
  $("batch-table").tBodies[0].replaceChildren(...body);
  const errors = rows.filter((r) => r.status === "error").length;
  const flaggedCount = rows.filter((r) => emotionsOf(r).some((e) => r["b_" + e])).length;
  $("batch-summary").textContent = `${rows.length} memes · ${flaggedCount} with an emotion flagged · ${errors} errors · showing ${shown.length}`;
}

// --- wiring ------------------------------------------------------------------------------------

function dropTarget(zone, onFiles) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); onFiles(e.dataTransfer.files); });
}

function init() {
  $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
  $("api-key").addEventListener("change", () => { localStorage.setItem(KEY_STORAGE, $("api-key").value.trim()); refreshStatus(); });
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll(".tab")) other.classList.toggle("active", other === tab);
      for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== "panel-" + tab.dataset.tab;
    });
  }
  $("file-input").addEventListener("change", (e) => chooseFile(e.target.files[0]));
  dropTarget($("drop-zone"), (files) => chooseFile(files[0]));
  $("classify-button").addEventListener("click", classifyCurrent);
  $("batch-files").addEventListener("change", (e) => classifyBatch(e.target.files));
  dropTarget($("batch-files").parentElement, classifyBatch);
  $("results-input").addEventListener("change", (e) => openResults(e.target.files[0]));
  $("batch-filter").addEventListener("change", drawTable);
  $("batch-sort").addEventListener("change", drawTable);
  refreshStatus();
}

init();
