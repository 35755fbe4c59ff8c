// The supervisor page: play (with seek), download, legal hold. Each asks for a reason,
// which the server writes to the audit ledger before it uses any key.
"use strict";

const player = document.getElementById("player");
const status = document.getElementById("player-status");
const reasonInput = document.getElementById("reason");

function say(text, bad) { status.textContent = text; status.className = bad ? "bad" : "muted"; }

function reason() {
  const value = reasonInput.value.trim();
  if (value.length < 3) { say("Enter a reason first (it goes into the audit ledger).", true); reasonInput.focus(); return null; }
  return value;
}

async function access(id, purpose, format, why) {
  const result = await api("POST", `/api/recordings/${encodeURIComponent(id)}/access`, {purpose, format, reason: why});
  if (!result.ok) { say(result.data.error || `refused (${result.status})`, true); return null; }
  return result.data;
}

async function play(id) {
  const why = reason();
  if (!why) return;
  const grant = await access(id, "play", "wav", why);
  if (!grant) return;
  player.dataset.recordingId = id;
  player.src = grant.url;
  say(`Playing ${id} (audit entry ${grant.grant}).`);
  try { await player.play(); } catch (e) { say(`Ready to play ${id} (audit entry ${grant.grant}); press play.`); }
}

async function download(id, format) {
  const why = reason();
  if (!why) return;
  const grant = await access(id, "download", format, why);
  if (!grant) return;
  const link = el("a", {href: grant.url, download: `${id}.${format}`, hidden: true});
  document.body.append(link);
  link.click();
  link.remove();
  say(`Downloading ${id}.${format} (audit entry ${grant.grant}).`);
}

async function hold(box) {
  const why = reason();
  if (!why) { box.checked = !box.checked; return; }
  box.disabled = true;
  const result = await api("POST", `/api/recordings/${encodeURIComponent(box.dataset.id)}/legal-hold`, {on: box.checked, reason: why});
  box.disabled = false;
  if (!result.ok) { box.checked = !box.checked; say(result.data.error || `refused (${result.status})`, true); return; }
  say(`Legal hold ${result.data.legal_hold ? "placed on" : "released from"} ${box.dataset.id}.`);
}

const results = document.getElementById("results");
if (results) {
  results.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.classList.contains("play")) play(button.dataset.id);
    else if (button.classList.contains("download")) download(button.dataset.id, button.dataset.format);
  });
  results.addEventListener("change", (event) => {
    if (event.target.classList.contains("hold")) hold(event.target);
  });
}
player.addEventListener("error", () => { if (player.getAttribute("src")) say("The recording could not be played.", true); });
