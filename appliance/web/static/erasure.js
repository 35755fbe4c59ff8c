// The officer's erasure page: dry-run plan, request, approvals, certificates.
"use strict";

let chosen = null;  // the selection the plan shown was made for

function selection() {
  const subject = document.getElementById("subject").value.trim();
  const ids = document.getElementById("recording-ids").value.split(/[\s,]+/).filter(Boolean);
  const body = {reference: document.getElementById("reference").value};
  if (ids.length) body.recording_ids = ids; else body.subject = subject;
  return body;
}

function list(id, title, items, text) {
  return el("div", {id}, el("h3", {}, `${title} (${items.length})`),
            el("ul", {}, ...items.map(i => el("li", {"data-id": i.recording_id || i}, text(i)))));
}

function problem(node, r) {
  node.replaceChildren(el("p", {className: "bad", role: "alert"}, r.data.error || ("error " + r.status)));
}

async function showPlan(event) {
  event.preventDefault();
  const shown = document.getElementById("plan");
  const confirm = document.getElementById("confirm");
  chosen = selection();
  const r = await api("POST", "/api/erasures/plan", chosen);
  confirm.hidden = true;
  if (!r.ok) { problem(shown, r); return; }
  const p = r.data.plan;
  shown.replaceChildren(
    el("h2", {}, `Dry run for ${r.data.reference}: nothing changed yet`),
    list("plan-erase", "Destroyed", p.erase, i => `${i.recording_id}: header deleted; payload unreadable, ` +
         `deleted when its lock ends (${i.retain_until || "no lock"})`),
    list("plan-held", "Held, left untouched", p.held, i => `${i.recording_id}: ${i.why}`),
    list("plan-flagged", "Not archived yet: the archiver erases them", p.flagged, i => `${i.recording_id} (${i.state})`),
    list("plan-gone", "Erased before", p.already_erased, i => i));
  confirm.hidden = !(p.erase.length || p.flagged.length);
}

function certLinks(id) {
  return el("span", {}, el("a", {href: `/api/erasures/${id}/certificate?format=html`, className: "cert"}, "certificate"),
            " (", el("a", {href: `/api/erasures/${id}/certificate?format=json`}, "JSON"), ")");
}

async function requestErasure(event) {
  event.preventDefault();
  const outcome = document.getElementById("outcome");
  const r = await api("POST", "/api/erasures", chosen);
  if (!r.ok) { problem(outcome, r); return; }
  document.getElementById("confirm").hidden = true;
  const id = r.data.request.request_id;
  outcome.replaceChildren(r.data.certificate
    ? el("p", {id: "done"}, `${id}: ${r.data.certificate.recordings.length} erased, ` +
         `${r.data.certificate.held.length} held. `, certLinks(id))
    : el("p", {id: "pending"}, `${id}: waiting for a second officer to approve it.`));
  await loadRequests();
}

async function approveRequest(id) {
  const outcome = document.getElementById("outcome");
  const r = await api("POST", `/api/erasures/${encodeURIComponent(id)}/approve`);
  if (!r.ok) { problem(outcome, r); return; }
  outcome.replaceChildren(el("p", {id: "done"}, `${id}: approved; ${r.data.certificate.recordings.length} erased. `,
                             certLinks(id)));
  await loadRequests();
}

async function loadRequests() {
  const shown = document.getElementById("requests");
  const me = (document.getElementById("who").textContent || "").split(" (")[0];
  const r = await api("GET", "/api/erasures");
  if (!r.ok) { problem(shown, r); return; }
  const head = el("tr", {}, ...["request", "reference", "requested by", "approved by", "state", ""].map(c => el("th", {}, c)));
  const rows = r.data.requests.map(q => {
    let action = "";
    if (q.state === "done") action = certLinks(q.request_id);
    else if (q.state === "pending" && q.requested_by !== me) {
      action = el("button", {type: "button", className: "approve", "data-id": q.request_id}, "Approve");
      action.addEventListener("click", () => approveRequest(q.request_id));
    } else if (q.state === "pending") action = "waiting for another officer";
    return el("tr", {"data-id": q.request_id}, el("td", {}, q.request_id), el("td", {}, q.reference),
              el("td", {}, q.requested_by), el("td", {}, q.approved_by || ""), el("td", {}, q.state), el("td", {}, action));
  });
  shown.replaceChildren(el("table", {id: "requests-table"}, head, ...rows));
}

document.getElementById("choose").addEventListener("submit", showPlan);
document.getElementById("confirm").addEventListener("submit", requestErasure);
loadRequests();
