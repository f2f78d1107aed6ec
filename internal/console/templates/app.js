// The console's only script: the buttons of the confirmation pages post to
// the admin API with a JSON body (never a form, which another site could
// send), and the list pages reload themselves.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("button[data-post]")) {
    b.disabled = false;
    b.addEventListener("click", async () => {
      b.disabled = true;
      const out = document.getElementById("result");
      try {
        const resp = await fetch(b.dataset.post, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: "{}",
          credentials: "same-origin",
        });
        if (resp.ok) {
          location.assign(b.dataset.done);
          return;
        }
        let msg = resp.status + " " + resp.statusText;
        try { msg = (await resp.json()).error || msg; } catch (e) { /* not JSON: a refusal's text */ }
        out.textContent = "Not done: " + msg;
      } catch (e) {
        out.textContent = "Not done: " + e;
      }
      out.hidden = false;
      b.disabled = false;
    });
  }
  const every = Number(document.body.dataset.refresh || 0);
  if (every > 0) {
    setTimeout(() => { if (document.visibilityState === "visible") location.reload(); }, every * 1000);
  }
});
