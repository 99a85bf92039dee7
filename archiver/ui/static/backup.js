// archiver ui, guided backup: keep the progress page live from the server-sent events.
// Without script (or EventSource) the page still shows the figures as of its loading.
(function () {
  var box = document.getElementById("backup-progress");
  if (!box || box.dataset.final === "1" || !window.EventSource) return;
  var source = new EventSource(box.dataset.events);
  function set(id, text) { var el = document.getElementById(id); if (el) el.textContent = text; }
  source.onmessage = function (event) {
    var s = JSON.parse(event.data);
    document.getElementById("bar").value = s.percent;
    set("percent", s.percent + " %");
    set("phase", s.phase_text);
    set("bytes", s.bytes_text);
    set("messages", s.messages_text);
    set("folder", s.folder);
    set("rate", s.rate_text);
    set("eta", s.eta_text);
    var notes = document.getElementById("notes");
    if (notes && notes.children.length !== s.notes.length) {  // a reconnect, an alert
      notes.replaceChildren.apply(notes, s.notes.map(function (text) {
        var li = document.createElement("li"); li.textContent = text; return li;
      }));
    }
    document.title = document.title.replace(/\d+ %/, s.percent + " %");
    if (s.final) { source.close(); window.location.reload(); }  // the summary and links
  };
})();
