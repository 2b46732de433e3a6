// HealthOS progressive enhancement: every page reads and every form posts without it.
// No inline script anywhere (the CSP forbids it); behaviour hangs off data- attributes and classes.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Spaces typed into a one-time-code field are harmless; strip them so the pattern check passes.
  for (const input of document.querySelectorAll('input[autocomplete="one-time-code"]')) {
    input.addEventListener("input", () => { input.value = input.value.replace(/\s+/g, ""); });
  }

  // A form with errors: move focus to the summary, so a screen reader announces what to fix.
  const summary = document.querySelector(".error-summary");
  if (summary) {
    summary.focus();
  } else {
    // The drug–allergy check asks for a reason: the cursor goes where the answer is typed.
    const reason = document.querySelector('.override textarea[name="allergy_override_reason"]');
    if (reason) reason.focus();
  }

  // A step that cannot be undone (finishing or cancelling an encounter) is confirmed first, once: pressed again
  // while the confirmed post is on its way, the question is not asked again (its Cancel would undo nothing,
  // the discharge being already sent); the one-click guard below refuses the repeat.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (form.dataset.submitted) return;
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // One click, one act: a second click while the first post is on its way does not post again.
  // The buttons are marked aria-disabled, never disabled: a disabled button is not sent with its form, and
  // the button clicked may be the answer itself (the bed board's name="state" value="blocked"), so it must
  // stay a live control while the browser builds what it posts. It also keeps the keyboard's place, which
  // disabling would drop to the page. The guard refuses the repeat itself, whichever button or key sends it.
  const submitButtons = (form) => Array.from(form.elements).filter((element) => element.type === "submit");
  const release = (form) => {
    delete form.dataset.submitted;
    for (const button of submitButtons(form)) button.removeAttribute("aria-disabled");
  };
  // A download (data-download) leaves the page where it was, with no event to say the file arrived: its
  // form is free again after a moment, long enough to swallow a double click, so the next file (another
  // log's evidence) needs no reload.
  const DOWNLOAD_REPEAT_AFTER_MS = 2000;
  for (const form of document.querySelectorAll('form[method="post"]')) {
    form.addEventListener("submit", (event) => {
      if (event.defaultPrevented) return;
      if (form.dataset.submitted) { event.preventDefault(); return; }
      form.dataset.submitted = "1";
      for (const button of submitButtons(form)) button.setAttribute("aria-disabled", "true");
      if ("download" in form.dataset) window.setTimeout(() => release(form), DOWNLOAD_REPEAT_AFTER_MS);
    });
  }

  // Back to a page the browser kept: its forms may be used again.
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    for (const form of document.querySelectorAll("form[data-submitted]")) release(form);
  });

  // A half-written note is not lost to a stray click on a link.
  for (const form of document.querySelectorAll("form.note-form")) {
    let dirty = false;
    form.addEventListener("input", () => { dirty = true; });
    form.addEventListener("submit", () => { dirty = false; });
    window.addEventListener("beforeunload", (event) => {
      if (dirty) { event.preventDefault(); event.returnValue = ""; }
    });
  }

  // "/" jumps to the search box, as in most search-first tools, unless the user is typing.
  const shortcut = document.querySelector("[data-shortcut]");
  if (shortcut) {
    document.addEventListener("keydown", (event) => {
      const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
      if (event.key === shortcut.dataset.shortcut && !typing && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        shortcut.focus();
        shortcut.select();
      }
    });
  }
});
