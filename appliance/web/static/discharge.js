// The signed discharge summary's Print button: shown only where script runs (without it the page says to print).
const printButton = document.querySelector("[data-print]");
if (printButton) {
  printButton.hidden = false;
  printButton.addEventListener("click", () => window.print());
}
