// The officer's data-subject page: find a caller number's calls, export the access bundle.
"use strict";

function table(id, cols, rows) {
  const head = el("tr", {}, ...cols.map(c => el("th", {}, c)));
  const body = rows.map(r => el("tr", {}, ...cols.map(c => el("td", {}, r[c] === null || r[c] === undefined ? "" : String(r[c])))));
  return el("table", {id}, head, ...body);
}

async function findSubject(event) {
  event.preventDefault();
  const number = document.getElementById("number").value;
  const found = document.getElementById("found");
  const r = await api("GET", "/api/subjects?number=" + encodeURIComponent(number));
  found.replaceChildren();
  if (!r.ok) { found.append(el("p", {className: "bad"}, r.data.error || ("error " + r.status))); return; }
  const d = r.data;
  found.append(
    el("h2", {}, `Recordings (${d.recordings.length})`),
    table("recordings", ["recording_id", "started_at", "state", "consent_state", "retain_until", "legal_hold"], d.recordings),
    el("h2", {}, `Consent events (${d.consents.length})`),
    table("consents", ["started_at", "outcome", "record", "recording_id", "rule"], d.consents),
    el("h2", {}, `Accesses (${d.accesses.length})`),
    table("accesses", ["at", "kind", "recording_id", "actor", "reason"], d.accesses));
  document.getElementById("export").hidden = false;
}

async function exportBundle(event) {
  event.preventDefault();
  const shown = document.getElementById("passphrase");
  const response = await fetch("/api/subjects/export", {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrfToken()},
    body: JSON.stringify({number: document.getElementById("number").value,
                          reference: document.getElementById("reference").value})});
  if (!response.ok) {
    let message = "error " + response.status;
    try { message = (await response.json()).error; } catch (e) { /* not JSON */ }
    shown.textContent = message; shown.hidden = false; return;
  }
  const passphrase = response.headers.get("X-Bundle-Passphrase");
  const blob = await response.blob();
  const link = el("a", {href: URL.createObjectURL(blob), download: "subject-access.zip.age"});
  document.body.append(link);
  link.click();
  link.remove();
  shown.replaceChildren("Passphrase (shown once): ", el("code", {id: "bundle-passphrase"}, passphrase));
  shown.hidden = false;
}

document.getElementById("find").addEventListener("submit", findSubject);
document.getElementById("export").addEventListener("submit", exportBundle);
