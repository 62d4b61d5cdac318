// Sign in with the admin key (operator) or a client key (key holder). The key goes to the
// gateway once, in this request; the browser keeps only the session cookie it sets.
import { api, clear, h, notice, start } from "../lib.js";

start(async (root) => {
  const key = h("input", { id: "key", name: "key", type: "password", autocomplete: "off", required: true, placeholder: "sk-…" });
  const message = h("div");
  const submit = h("button.primary", { type: "submit", text: "Sign in" });
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        submit.disabled = true;
        message.replaceChildren();
        try {
          const session = await api("POST", "/console/api/session", { key: key.value });
          const next = new URLSearchParams(location.search).get("next") || "";
          // Only a console path: the sign-in page never sends anyone elsewhere.
          location.assign(/^\/console\/[a-z]+(\?[^#]*)?$/.test(next) ? next : session.home);
        } catch (error) {
          message.replaceChildren(notice(error.message, "error"));
          submit.disabled = false;
        }
      },
    },
    h("label.field", {}, h("span", { text: "Admin key or your API key" }), key),
    submit,
    message,
  );
  clear(
    root,
    h(
      "div.signin.panel",
      {},
      h("p.muted", { text: "Operators sign in with the admin key. Key holders sign in with their own API key to see its usage, balance and logs, and to try models in the playground." }),
      form,
    ),
  );
  key.focus();
});
