// The review queue: a moderator's workflow on /v1/reviews (staff key), driven by the keyboard.
"use strict";

const STAFF_STORAGE = "memotion.staffKey";
const review = { items: [], index: -1, detail: null };

async function staffApi(path, options) {
  const key = $("staff-key").value.trim();
  const headers = { ...((options || {}).headers || {}), ...(key ? { Authorization: "Bearer " + key } : {}) };
  const response = await fetch(path, { ...(options || {}), headers });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const error = (body && body.error) || { code: "http_" + response.status, message: response.statusText };
    throw new Error(`${error.code} (${response.status}): ${error.message}`);
  }
  return body;
}

function queueError(message) {
  if (message) showError($("queue-error"), message); else $("queue-error").hidden = true;
}

async function loadQueue() {
  queueError(null);
  try {
    const page = await staffApi(`/v1/reviews?status=${$("queue-status").value}&limit=100`);
    review.items = page.items;
    $("queue-summary").textContent = `${page.items.length} ${$("queue-status").value}` + (page.next_after ? " (more)" : "");
    drawQueue();
    if (review.items.length) await openItem(0); else { $("item").hidden = true; review.index = -1; }
  } catch (err) {
    queueError(err.message);
  }
}

function reasonSummary(item) {
  const reasons = (item.decision.reasons || []).map((r) => r.head + " " + r.kind.replace("_", " "));
  return reasons.join(", ") || item.reason;
}

function drawQueue() {
  const list = review.items.map((item, i) => el("li", { class: "queue-item" + (i === review.index ? " current" : ""),
    "data-id": String(item.id) }, el("span", { class: "action " + item.action }, item.action), ` #${item.id} `,
    el("span", { class: "why" }, reasonSummary(item)), el("div", { class: "snippet" }, item.text || "(no text)")));
  list.forEach((node, i) => node.addEventListener("click", () => openItem(i)));
  $("queue-list").replaceChildren(...list);
}

function labelSelects(detail) {
  const chosen = detail.corrected_labels || {};
  return Object.entries(detail.heads).map(([head, info]) => {
    const select = el("select", { "data-head": head });
    for (const label of info.labels) {
      const option = el("option", { value: label }, label + (label === info.predicted ? " (model)" : ""));
      if (label === (chosen[head] || info.predicted)) option.selected = true;
      select.append(option);
    }
    return el("label", { class: "label-field" }, head, select);
  });
}

function similarItem(s) {
  return el("li", { "data-review": String(s.review_id) }, el("span", { class: "action " + s.decided_action }, s.decided_action),
    ` #${s.review_id} · same ${s.match === "sha256" ? "file" : "picture"}` + (s.match === "phash" ? ` (${s.distance} bits)` : ""),
    el("div", { class: "snippet" }, s.text || ""));
}

async function openItem(index) {
  if (index < 0 || index >= review.items.length) return;
  review.index = index;
  drawQueue();
  const detail = await staffApi(`/v1/reviews/${review.items[index].id}`);
  review.detail = detail;
  $("item-id").textContent = detail.id;
  $("item-action").textContent = detail.decided_action ? `${detail.action} → ${detail.decided_action}` : detail.action;
  $("item-action").className = "action " + (detail.decided_action || detail.action);
  $("item-status").textContent = detail.status + (detail.claimed_by ? ` by ${detail.claimed_by}` : "");
  $("item-policy").textContent = `${detail.policy} v${detail.policy_version}`;
  $("item-client").textContent = detail.client;
  $("item-model").textContent = detail.model_version;
  $("item-created").textContent = detail.created_at;
  $("item-text").textContent = detail.text || "(no text)";
  $("item-reasons").replaceChildren(...(detail.decision.reasons || []).map(reasonItem));
  const thumb = $("item-thumbnail");
  thumb.hidden = !detail.thumbnail_base64;
  if (detail.thumbnail_base64) thumb.src = "data:image/jpeg;base64," + detail.thumbnail_base64;
  const similar = detail.similar.map(similarItem);
  $("item-similar").replaceChildren(...(similar.length ? similar : [el("li", { class: "none" }, "none")]));
  $("item-labels").replaceChildren(...labelSelects(detail));
  $("item-note").value = detail.note || "";
  $("item-message").textContent = "";
  $("item").hidden = false;
}

async function claimCurrent() {
  if (!review.detail) return;
  try {
    await staffApi(`/v1/reviews/${review.detail.id}/claim`, { method: "POST" });
    await openItem(review.index);
    $("item-message").textContent = "claimed";
  } catch (err) { $("item-message").textContent = err.message; }
}

async function decideCurrent(action) {
  if (!review.detail) return;
  const labels = {};
  for (const select of $("item-labels").querySelectorAll("select")) labels[select.dataset.head] = select.value;
  const note = $("item-note").value.trim();
  try {
    await staffApi(`/v1/reviews/${review.detail.id}/decision`, { method: "POST",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ action, labels, note: note || null }) });
  } catch (err) { $("item-message").textContent = err.message; return; }
  review.items.splice(review.index, 1);
  $("queue-summary").textContent = `decided #${review.detail.id}: ${action} · ${review.items.length} left`;
  review.detail = null;
  if (review.items.length) await openItem(Math.min(review.index, review.items.length - 1));
  else { drawQueue(); $("item").hidden = true; }
}

function onKey(event) {
  if ($("panel-review").hidden || ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName)) return;
  const actions = { a: "allow", r: "review", b: "block" };
  if (actions[event.key]) decideCurrent(actions[event.key]);
  else if (event.key === "c") claimCurrent();
  else if (event.key === "j") openItem(review.index + 1);
  else if (event.key === "k") openItem(review.index - 1);
  else if (event.key === "n") { event.preventDefault(); $("item-note").focus(); }
  else return;
  event.preventDefault();
}

function initReview() {
  $("staff-key").value = localStorage.getItem(STAFF_STORAGE) || "";
  $("staff-key").addEventListener("change", () => localStorage.setItem(STAFF_STORAGE, $("staff-key").value.trim()));
  $("queue-load").addEventListener("click", loadQueue);
  $("queue-status").addEventListener("change", loadQueue);
  $("claim-button").addEventListener("click", claimCurrent);
  for (const button of document.querySelectorAll(".decide button[data-action]")) {
    button.addEventListener("click", () => decideCurrent(button.dataset.action));
  }
  document.addEventListener("keydown", onKey);
}

initReview();
