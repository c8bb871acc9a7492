// Behaviour of the demo workspace beyond pat-push: lists `portal-notification`
// events from the `site` channel and sends the notification form with fetch,
// so the page, and its socket, stay open.
(function () {
  "use strict";

  function addNotification(data) {
    var list = document.getElementById("notification-list");
    if (!list || !data || typeof data.text !== "string") return;

    var item = document.createElement("li");
    var from = document.createElement("span");
    from.className = "from";
    from.textContent = String(data.from || "someone");
    item.appendChild(from);
    item.appendChild(document.createTextNode(data.text));
    list.insertBefore(item, list.firstChild);
  }

  document.body.addEventListener("portal-notification", function (event) {
    var detail = event.detail || {};
    addNotification(detail.data !== undefined ? detail.data : detail);
  });

  var form = document.querySelector("form.notify");
  if (!form) return;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var body = new URLSearchParams(new FormData(form));
    fetch(form.action, {
      method: "POST",
      body: body,
      headers: { Accept: "application/json" },
    }).then(
      function (response) {
        if (response.ok) form.reset();
      },
      function () {},
    );
  });
})();
