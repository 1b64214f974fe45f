// ticketflow review desk: keyboard shortcuts. The pages work without it (plain forms).
// 1-9 pick a label, Enter submits, j/k move through the queue (or the queue's rows).
(function () {
  "use strict";
  function typing(target) {
    const tag = target && target.tagName;
    return tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && target.type !== "radio");
  }
  // A focused link or button answers Enter itself (follow, log out): never the answer form.
  function control(target) { return Boolean(target && target.closest && target.closest("a, button")); }
  function go(link) { if (link) { window.location.assign(link.getAttribute("href")); } }
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) { return; }
    if (event.key === "Enter" && control(event.target)) { return; }
    const form = document.getElementById("answer");
    const rows = Array.from(document.querySelectorAll("#queue tbody tr"));
    if (form) {
      if (/^[1-9]$/.test(event.key)) {
        const radio = form.querySelector('input[type="radio"][data-key="' + event.key + '"]');
        if (radio) { radio.checked = true; radio.focus(); event.preventDefault(); }
      } else if (event.key === "Enter") {
        event.preventDefault();
        form.requestSubmit ? form.requestSubmit() : form.submit();
      } else if (event.key === "j") { go(document.getElementById("next")); }
      else if (event.key === "k") { go(document.getElementById("prev")); }
      return;
    }
    if (!rows.length) { return; }
    let at = rows.findIndex(function (row) { return row.classList.contains("selected"); });
    if (event.key === "j" || event.key === "k") {
      if (at >= 0) { rows[at].classList.remove("selected"); }
      at = event.key === "j" ? Math.min(at + 1, rows.length - 1) : Math.max(at - 1, 0);
      rows[at].classList.add("selected");
      rows[at].scrollIntoView({ block: "nearest" });
      event.preventDefault();
    } else if (event.key === "Enter" && at >= 0) {
      window.location.assign(rows[at].getAttribute("data-href"));
      event.preventDefault();
    }
  });
})();
