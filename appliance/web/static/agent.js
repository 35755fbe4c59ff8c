// The agent page: live calls over a WebSocket, and the PCI pause button.
"use strict";

const RECORDING_TEXT = {"not-recorded": "not recorded", "recording": "recording", "paused": "paused", "stopped": "stopped"};
const KEEP_ENDED_MS = 30000;
const table = document.getElementById("calls");
const tbody = table.querySelector("tbody");
const canPause = table.dataset.canPause === "true";
const liveState = document.getElementById("live-state");
const noCalls = document.getElementById("no-calls");

function when(ts) {
  return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function clock(ts) { return new Date(ts * 1000).toISOString().slice(11, 19); }

// Each PCI pause: from, until (or "now") and what paused it (web, dtmf, ivr).
function pauseList(pauses) {
  if (!pauses || !pauses.length) return "";
  return el("ul", {className: "pauses"}, ...pauses.map((p) =>
    el("li", {"data-by": p.by}, `${clock(p.from)}–${p.until === null ? "now" : clock(p.until)} (${p.by})`)));
}

function row(call) {
  let button = "";
  if (canPause && !call.ended && (call.recording === "recording" || call.recording === "paused")) {
    const paused = call.recording === "paused";
    button = el("button", {className: "pause", "data-call-id": call.call_id, "data-paused": String(paused)},
                paused ? "Resume recording" : "Pause recording (card details)");
  }
  const tr = el("tr", {"data-call-id": call.call_id, className: call.ended ? "ended" : null},
    el("td", {}, when(call.started_at)), el("td", {}, call.did || "—"), el("td", {}, call.caller || "—"),
    el("td", {className: "consent", "data-state": call.consent}, call.consent),
    el("td", {className: "recording", "data-state": call.recording},
       (RECORDING_TEXT[call.recording] || call.recording) + (call.ended ? " (call ended)" : ""), pauseList(call.pauses)),
    el("td", {}, button));
  if (call.ended) setTimeout(() => { if (tr.isConnected && tr.classList.contains("ended")) { tr.remove(); empty(); } }, KEEP_ENDED_MS);
  return tr;
}

function empty() { noCalls.hidden = tbody.children.length > 0; }

function upsert(call) {
  const fresh = row(call);
  const old = tbody.querySelector(`tr[data-call-id="${CSS.escape(call.call_id)}"]`);
  if (old) old.replaceWith(fresh); else tbody.prepend(fresh);
  empty();
}

function show(state, text) { liveState.dataset.state = state; liveState.textContent = text; }

let delay = 500;
function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => { delay = 500; show("live", "live: updates as they happen"); };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "snapshot") {
      tbody.replaceChildren(...message.calls.map(row));
      empty();
    } else if (message.type === "call") {
      upsert(message.call);
    } else if (message.type === "gone") {  // transferred to another agent
      const old = tbody.querySelector(`tr[data-call-id="${CSS.escape(message.call_id)}"]`);
      if (old) old.remove();
      empty();
    }
  };
  ws.onclose = (event) => {
    if (event.code === 1008) { show("lost", "signed out"); location.href = "/login"; return; }
    show("lost", "connection lost; reconnecting…");
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 10000);
  };
}

tbody.addEventListener("click", async (event) => {
  const button = event.target.closest("button.pause");
  if (!button) return;
  button.disabled = true;
  const paused = button.dataset.paused !== "true";
  const result = await api("POST", `/api/calls/${encodeURIComponent(button.dataset.callId)}/pause`, {paused});
  if (result.ok) upsert(result.data);
  else { button.disabled = false; show("lost", result.data.error || `failed (${result.status})`); }
});

connect();
