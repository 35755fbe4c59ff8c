// The officer's legal-hold cases and standing objections: forms over the JSON API.
"use strict";

const SHOWN = "callvault-cases-outcome";

function value(form, selector) {
  const node = form.querySelector(selector);
  return node ? node.value.trim() : "";
}

function say(text, bad) {
  const node = el("p", {id: bad ? "problem" : "done", className: bad ? "bad" : "ok", role: bad ? "alert" : null}, text);
  document.getElementById("outcome").replaceChildren(node);
}

// Send one action; on success reload the listing and show what happened, on failure show the API's error.
async function send(url, body, done) {
  document.getElementById("outcome").replaceChildren();  // no stale message while this one runs
  const r = await api("POST", url, body);
  if (!r.ok) { say(r.data.error || `error ${r.status}`, true); return; }
  sessionStorage.setItem(SHOWN, done(r.data));
  location.reload();
}

function caseUrl(form, tail) {
  return `/api/cases/${encodeURIComponent(value(form, "select.case"))}/${tail}`;
}

function selection(form) {
  const body = {};
  for (const [key, id] of [["subject", "#subject"], ["since", "#since"], ["until", "#until"], ["agent", "#agent"],
                           ["did", "#did"], ["recording_id", "#recording-id"]]) {
    const v = value(form, id);
    if (v) body[key] = v;
  }
  return body;
}

const ACTIONS = {
  create: f => send("/api/cases", {name: value(f, "#case-name"), reason: value(f, "#case-reason")},
                    d => `Case ${d.name} opened.`),
  add: f => send(caseUrl(f, "recordings"), selection(f),
                 d => `${d.added.length} recording(s) added to ${d.name}: ${d.added.join(" ") || "none matched"}.`),
  remove: f => send(caseUrl(f, "remove"), {recording_id: value(f, "#remove-id"), reason: value(f, "#remove-reason")},
                    d => `Removed from ${d.name}; ` + (d.released ? "its hold is released." : "still held by another case.")),
  close: f => send(caseUrl(f, "close"), {reason: value(f, "#close-reason")},
                   d => `Case ${d.name} closed; ${d.released.length} hold(s) released.`),
  objection: f => send("/api/objections", {number: value(f, "#number"), reason: value(f, "#objection-reason")},
                       d => `Objection ${d.objection_id} recorded.`),
};

for (const [id, action] of Object.entries(ACTIONS)) {
  const form = document.getElementById(id);
  if (form) form.addEventListener("submit", event => { event.preventDefault(); action(form); });
}

const lift = document.getElementById("lift");
if (lift) {
  lift.addEventListener("click", () => {
    const form = document.getElementById("objection");
    if (!form.reportValidity()) return;
    send("/api/objections/lift", {number: value(form, "#number"), reason: value(form, "#objection-reason")},
         () => "Objection lifted.");
  });
}

const before = sessionStorage.getItem(SHOWN);
if (before) { sessionStorage.removeItem(SHOWN); say(before, false); }
