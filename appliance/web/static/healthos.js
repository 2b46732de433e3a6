// HealthOS progressive enhancement: pages work without it. No inline script anywhere (CSP).
document.addEventListener("DOMContentLoaded", () => {
  // Spaces typed into a one-time-code field are harmless; strip them so the pattern check passes.
  for (const input of document.querySelectorAll('input[autocomplete="one-time-code"]')) {
    input.addEventListener("input", () => { input.value = input.value.replace(/\s+/g, ""); });
  }
});
