// Mailroom admin page: the mailbox list refreshes itself, dangerous buttons ask first, and
// the mailbox form shows only the fields of the chosen protocol and authentication.
"use strict";

// The server renders the tables again (escaped as on the page); they replace the old ones.
function refreshList(root) {
  const every = Number(root.dataset.every || "10") * 1000;
  async function tick() {
    try {
      const answer = await fetch(root.dataset.refresh, { credentials: "same-origin" });
      if (answer.redirected || answer.status === 401) {
        window.location.assign("/login?expired=1&next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      if (!answer.ok) return;
      root.innerHTML = await answer.text();
      for (const form of root.querySelectorAll("form[data-confirm]")) askFirst(form);
      root.dataset.refreshedAt = new Date().toISOString();
    } catch (e) {
      // Offline for a moment: the next tick tries again.
    }
  }
  setInterval(tick, every);
}

function askFirst(form) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}

function followChoices(form) {
  const protocol = form.querySelector('select[name="protocol"]');
  const auth = form.querySelector('select[name="auth"]');
  let previous = protocol ? protocol.value : "";

  function defaultsOf(value) {
    const option = protocol && Array.from(protocol.options).find((o) => o.value === value);
    return option && option.dataset.defaults ? JSON.parse(option.dataset.defaults) : {};
  }

  // A field still at the old protocol's default (or empty) takes the new one's.
  function refill() {
    const before = defaultsOf(previous);
    const after = defaultsOf(protocol.value);
    for (const [name, value] of Object.entries(after)) {
      const input = form.querySelector(`[name="${name}"]`);
      if (input && (input.value === "" || input.value === before[name])) input.value = value;
    }
    previous = protocol.value;
  }

  function update() {
    const p = protocol ? protocol.value : "";
    if (auth) {
      for (const option of auth.options) {
        option.disabled = !(option.dataset.protocols || "").split(" ").includes(p);
      }
      if (auth.selectedOptions.length && auth.selectedOptions[0].disabled) {
        const first = Array.from(auth.options).find((o) => !o.disabled);
        if (first) auth.value = first.value;
      }
    }
    const a = auth ? auth.value : "basic";
    for (const el of form.querySelectorAll("div[data-protocols]")) {
      const protocols = el.dataset.protocols.split(" ");
      const auths = (el.dataset.auths || "basic oauth").split(" ");
      el.hidden = !(protocols.includes(p) && auths.includes(a));
    }
    for (const set of form.querySelectorAll("fieldset")) {
      set.hidden = !set.querySelector("div[data-protocols]:not([hidden])");
    }
  }
  if (protocol) protocol.addEventListener("change", () => { refill(); update(); });
  if (auth) auth.addEventListener("change", update);
  update();
}

// The redirect URL is registered with the OAuth client: one click copies it.
function copyButton(button) {
  button.addEventListener("click", async () => {
    const field = document.getElementById(button.dataset.copy);
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
      button.textContent = "Copied";
    } catch (e) {
      document.execCommand("copy");
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("mailboxes");
  if (list) refreshList(list);
  for (const form of document.querySelectorAll("form[data-confirm]")) askFirst(form);
  for (const form of document.querySelectorAll("form[data-follows-protocol]")) followChoices(form);
  for (const button of document.querySelectorAll("button[data-copy]")) copyButton(button);
});
