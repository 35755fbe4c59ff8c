// The admin page: place a lab test call.
"use strict";

const form = document.getElementById("test-call-form");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = document.getElementById("test-call-result");
    out.textContent = "placing…";
    const result = await api("POST", "/api/admin/test-call", {did: document.getElementById("test-did").value});
    out.textContent = result.ok ? `test call ${result.data.call_id} placed to ${result.data.did} (${result.data.seconds} s)`
                                : (result.data.error || `failed (${result.status})`);
    out.className = result.ok ? "ok" : "bad";
  });
}
