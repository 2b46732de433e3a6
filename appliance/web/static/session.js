// HealthOS: the idle timeout without losing what was typed. Loaded by every page (no inline script: the
// CSP forbids it); every page still works without it.
//
// - Typing in a form is activity: while a person types, the page posts /session/alive (CSRF-protected) at
//   most once a minute, and the server marks the session seen. Reading without touching anything is not
//   activity, so an unattended ward computer is still signed out after the idle timeout.
// - Two minutes before the timeout would sign an idle person out, a warning offers "Stay signed in".
// - What is typed in a portal form is kept in this tab's sessionStorage as a draft of its author. A form
//   posted after the session ended comes back as the sign-in page; after signing in (the sign-in form is
//   pointed back at the form's page), the draft is put back in its form. A draft is removed once its form
//   is posted while signed in (saved, or returned by the server with what was typed), when its page is
//   left for another portal page, at sign-out, when another person signs in in this tab, and after four
//   hours; sessionStorage itself ends with the tab. Passwords, hidden fields and CSRF tokens are never kept.
"use strict";

(() => {
  const PREFIX = "healthos.draft:";
  const MAX_AGE_MS = 4 * 60 * 60 * 1000;
  const PING_EVERY_MS = 60 * 1000;
  // The server marks a session seen at most once a minute (identity.load_session): its clock may run a
  // minute behind ours.
  const SERVER_SLACK_MS = 60 * 1000;
  const WARN_BEFORE_MS = 2 * 60 * 1000;
  const NOT_DRAFTED = new Set(["hidden", "password", "file", "submit", "button", "reset", "image"]);
  // Forms that are not a person's work: signing in and out, switching facility.
  const NOT_DRAFTS = /^\/(signin|signout|enrol|session)(\/|$|\?)/;

  function storage() {
    try { return window.sessionStorage; } catch (error) { return null; }  // storage refused by the browser
  }

  function drafts() {
    const store = storage();
    const found = [];
    if (!store) return found;
    for (let i = 0; i < store.length; i += 1) {
      const key = store.key(i);
      if (!key || !key.startsWith(PREFIX)) continue;
      try { found.push([key, JSON.parse(store.getItem(key))]); } catch (error) { found.push([key, null]); }
    }
    return found;
  }

  function forget(key) { const store = storage(); if (store) store.removeItem(key); }
  function keep(key, draft) {
    const store = storage();
    if (!store) return;
    try { store.setItem(key, JSON.stringify(draft)); } catch (error) { /* storage full: the form still posts */ }
  }
  function forgetAll() { for (const [key] of drafts()) forget(key); }

  function draftable(form) {
    const action = form.getAttribute("action") || "";
    if ((form.getAttribute("method") || "").toLowerCase() !== "post" || NOT_DRAFTS.test(action)) return false;
    return Boolean(form.closest("main")) && form.querySelector("textarea, input:not([type]), input[type=text], " +
      "input[type=number], input[type=date], input[type=search]") !== null;
  }

  function keyOf(form) {
    const action = form.getAttribute("action") || "";
    const same = Array.from(document.querySelectorAll("form")).filter((f) => f.getAttribute("action") === action);
    return `${PREFIX}${location.pathname}${location.search}|${action}|${same.indexOf(form)}`;
  }

  function fieldsOf(form) {
    const values = [];
    for (const field of form.elements) {
      if (!field.name || field.name === "_csrf_token" || field.disabled || NOT_DRAFTED.has(field.type)) continue;
      if (field.type === "checkbox" || field.type === "radio") {
        values.push([field.name, field.value, field.checked]);
      } else if (field.tagName === "SELECT" && field.multiple) {
        values.push([field.name, Array.from(field.selectedOptions, (o) => o.value), true]);
      } else {
        values.push([field.name, field.value, null]);
      }
    }
    return values;
  }

  function putBack(form, values) {
    let restored = false;
    for (const [name, value, checked] of values) {
      for (const field of form.elements) {
        if (field.name !== name || NOT_DRAFTED.has(field.type)) continue;
        if (field.type === "checkbox" || field.type === "radio") {
          if (field.value === value && field.checked !== checked) { field.checked = checked; restored = true; }
        } else if (field.tagName === "SELECT" && field.multiple) {
          for (const option of field.options) option.selected = value.includes(option.value);
          restored = true;
        } else if (field.value !== value && (field.value === "" || field.tagName === "SELECT")) {
          // Never over what the server filled in (a form returned with errors keeps what was posted).
          field.value = value;
          restored = restored || value !== "";
        }
      }
    }
    return restored;
  }

  function say(form, text) {
    const notice = document.createElement("p");
    notice.className = "notice";
    notice.setAttribute("role", "status");
    notice.textContent = text;
    form.parentNode.insertBefore(notice, form);
  }

  // -- a page without a session: the sign-in pages, and the refusal a form posted too late gets ----------

  function signedOut() {
    const kept = drafts().filter(([, draft]) => draft);
    for (const [key, draft] of kept) {
      if (draft.state !== "interrupted") keep(key, { ...draft, state: "interrupted" });
    }
    if (kept.length === 0) return;
    for (const notice of document.querySelectorAll("[data-draft-kept]")) notice.hidden = false;
    // Signing in brings the person back to the form, unless they were already on their way somewhere.
    const latest = kept.reduce((a, b) => (b[1].at > a[1].at ? b : a))[1];
    const signIn = document.querySelector('form[action="/signin"]');
    if (signIn && !signIn.querySelector('input[name="next"]')) {
      const next = document.createElement("input");
      next.type = "hidden";
      next.name = "next";
      next.value = latest.page;
      signIn.appendChild(next);
    }
  }

  // -- a portal page: its drafts, the keep-alive and the warning ---------------------------------------------

  function signedIn(session) {
    const account = session.dataset.account;
    const here = `${location.pathname}${location.search}`;
    const forms = Array.from(document.querySelectorAll("form")).filter(draftable);
    const keys = new Map(forms.map((form) => [keyOf(form), form]));
    for (const [key, draft] of drafts()) {
      const form = keys.get(key);
      if (!draft || draft.owner !== account || Date.now() - draft.at > MAX_AGE_MS || draft.state === "pending") {
        forget(key);  // another person's text, too old, or posted while signed in
      } else if (draft.state === "interrupted" && form) {
        if (putBack(form, draft.fields)) {
          say(form, "What you typed before your session ended has been put back. Check it, then save.");
          // Unsaved text again: leaving the page asks first (healthos.js), as it did before the timeout.
          form.dispatchEvent(new Event("input", { bubbles: true }));
        }
        keep(key, { ...draft, state: "typing" });
      } else if (draft.state !== "interrupted" && draft.page !== here) {
        forget(key);  // a form left for another page
      }
    }

    const token = document.querySelector('input[name="_csrf_token"]');
    let lastContact = Date.now();
    let ended = false;
    const warning = document.getElementById("session-warning");

    function show(state) {
      if (!warning) return;
      warning.hidden = state === null;
      for (const part of warning.querySelectorAll("[data-session]")) part.hidden = part.dataset.session !== state;
      if (state === "ended") {
        const link = warning.querySelector('a[href^="/signin"]');
        if (link) link.href = `/signin?${new URLSearchParams({ next: here })}`;
      }
    }

    function keepAlive() {
      if (ended || !token) return;
      lastContact = Date.now();
      fetch("/session/alive", {
        method: "POST", credentials: "same-origin", headers: { "x-csrf-token": token.value },
      }).then((answer) => {
        if (answer.status === 401) { ended = true; show("ended"); } else if (answer.ok) { show(null); }
      }).catch(() => { /* the network, not the session: the next keystroke tries again */ });
    }

    for (const form of forms) {
      const key = keyOf(form);
      const save = (event) => {
        if (!event.isTrusted) return;
        keep(key, { owner: account, page: here, at: Date.now(), state: "typing", fields: fieldsOf(form) });
      };
      form.addEventListener("input", save);
      form.addEventListener("change", save);
      form.addEventListener("submit", () => {
        const store = storage();
        const draft = store && store.getItem(key);
        if (draft) keep(key, { ...JSON.parse(draft), state: "pending", fields: fieldsOf(form) });
      });
    }
    document.addEventListener("input", (event) => {
      if (event.isTrusted && event.target.closest("form") && Date.now() - lastContact > PING_EVERY_MS) keepAlive();
    });
    const stay = document.getElementById("stay-signed-in");
    if (stay) stay.addEventListener("click", keepAlive);

    const idleMs = Number(session.dataset.idleSeconds) * 1000;
    if (idleMs > 0) {
      window.setInterval(() => {
        if (ended) return;
        const left = idleMs - SERVER_SLACK_MS - (Date.now() - lastContact);
        if (left <= 0) { ended = true; show("ended"); } else if (left <= WARN_BEFORE_MS) { show("ending"); }
      }, 5000);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    // Signing out ends every draft of this tab: the next person at a shared computer finds none.
    for (const form of document.querySelectorAll('form[action^="/signout"]')) {
      form.addEventListener("submit", forgetAll);
    }
    const session = document.getElementById("session");
    if (session) signedIn(session); else signedOut();
  });
})();
