// archiver ui: the few lines of script the pages use (CSP: only files from /static run).
// A click anywhere on a message row opens the message, not just on its subject.
document.addEventListener("click", function (event) {
  var row = event.target.closest && event.target.closest("table.messages tbody tr");
  if (!row || event.target.closest("a")) return;
  var link = row.querySelector("td.subject a");
  if (link) window.location.href = link.href;
});
