// Tessera console: the one script. "Trace a token" hashes the pasted token in the browser
// (WebCrypto SHA-256) and sends only its fingerprint, `sha256:<hex>` as the audit store
// records it; the token field has no name, so the form never sends the token itself.
"use strict";

async function fingerprint(token) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
  const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  return "sha256:" + hex;
}

function traceForm() {
  const form = document.getElementById("trace-form");
  if (!form) {
    return;
  }
  const tokenField = document.getElementById("trace-token");
  const hidden = document.getElementById("trace-fingerprint");
  const status = document.getElementById("trace-status");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = tokenField.value.trim();
    if (token === "") {
      status.textContent = "Paste a token first.";
      return;
    }
    if (!window.crypto || !crypto.subtle) {
      status.textContent =
        "This browser offers WebCrypto only over HTTPS or on loopback: open the console that way to trace a token.";
      return;
    }
    hidden.value = await fingerprint(token);
    tokenField.value = "";
    status.textContent = "Looking up " + hidden.value;
    form.submit();
  });
}

document.addEventListener("DOMContentLoaded", traceForm);
