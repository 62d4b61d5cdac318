// The playground: chat with a model the key may use, the answer streaming in as it arrives,
// tools as JSON, and each answer's usage and cost from its log row. The browser never holds
// a key: the console runs the call in-process for the session's key (an operator picks one).
import { ApiError, api, button, clear, field, h, input, isOperator, notice, number, ownKeyId, select, start, stream, usd } from "../lib.js";

start(async (root) => {
  let keyId = ownKeyId;
  const history = [];
  let controller = null;

  const keyPicker = h("div");
  const modelSelect = select("model", [], "");
  const system = h("textarea", { id: "f-system", name: "system", placeholder: "optional system prompt" });
  const maxTokens = input("max_tokens", { type: "number", min: 1, placeholder: "default" });
  const temperature = input("temperature", { type: "number", min: 0, max: 2, step: 0.1, placeholder: "default" });
  const tools = h("textarea", { id: "f-tools", name: "tools", placeholder: '[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]' });
  const toolChoice = select("tool_choice", [["", "auto"], ["none", "none"], ["required", "required"]], "");
  const conversation = h("div.chat", { id: "conversation", "aria-live": "polite" });
  const prompt = h("textarea", { id: "f-prompt", name: "prompt", placeholder: "Say something…", rows: 3 });
  const status = h("div", { id: "status" });
  const send = h("button.primary", { type: "submit", id: "send", text: "Send" });
  const stop = button("Stop", () => controller?.abort(), { id: "stop", disabled: true });

  async function loadModels() {
    if (!keyId) {
      clear(modelSelect);
      return;
    }
    const models = (await api("GET", `/admin/keys/${keyId}/models`)).data;
    clear(modelSelect, models.map((m) => h("option", { value: m, text: m })));
    if (!models.length) clear(status, notice("No channel serves a model this key may use.", "error"));
  }

  if (isOperator) {
    const keys = (await api("GET", "/admin/keys")).data;
    keyId = keys.length ? keys[0].id : null;
    const keySelect = select("key_id", keys.map((k) => [String(k.id), `${k.name} (#${k.id})`]), keyId ?? "", {
      onchange: async (event) => {
        keyId = Number(event.target.value);
        await loadModels();
      },
    });
    clear(keyPicker, field("Key to charge", keySelect, keys.length ? "The call is charged to this key, as if it made it." : "Create a key first."));
  }
  await loadModels();

  function bubble(role, text) {
    const content = h("span.content", { text });
    const node = h(`div.message.${role}`, {}, content);
    conversation.append(node);
    return { node, content };
  }

  async function ask(event) {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || !modelSelect.value) return;
    let toolList;
    if (tools.value.trim()) {
      try {
        toolList = JSON.parse(tools.value);
      } catch (error) {
        clear(status, notice(`Tools are not valid JSON: ${error.message}`, "error"));
        return;
      }
    }
    status.replaceChildren();
    prompt.value = "";
    history.push({ role: "user", content: text });
    bubble("user", text);
    const answer = bubble("assistant", "");
    answer.node.dataset.state = "streaming";
    const calls = [];
    const callsView = h("pre.mono");
    const meta = h("span.meta", { text: "…" });
    answer.node.append(callsView, meta);
    let failed = null;

    const messages = system.value.trim() ? [{ role: "system", content: system.value.trim() }, ...history] : [...history];
    const body = { model: modelSelect.value, messages };
    if (isOperator) body.key_id = keyId;
    if (maxTokens.value) body.max_tokens = Number(maxTokens.value);
    if (temperature.value) body.temperature = Number(temperature.value);
    if (toolList) {
      body.tools = toolList;
      if (toolChoice.value) body.tool_choice = toolChoice.value;
    }
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    try {
      await stream(
        "/console/api/chat",
        body,
        (kind, data) => {
          if (kind === "charged") {
            const row = JSON.parse(data);
            answer.node.dataset.costNano = row.cost_nano ?? "";
            answer.node.dataset.requestId = row.request_id;
            meta.textContent = `${number(row.prompt_tokens)} prompt + ${number(row.completion_tokens)} completion tokens · ${usd(row.cost_nano)} · ${row.served_model || row.model || ""} · ${row.request_id}`;
            return;
          }
          if (data === "[DONE]") return;
          const chunk = JSON.parse(data);
          if (chunk.error) {
            failed = chunk.error.message || "The stream failed.";
            return;
          }
          const delta = chunk.choices?.[0]?.delta;
          if (!delta) return;
          if (delta.content) answer.content.textContent += delta.content;
          for (const call of delta.tool_calls || []) {
            const slot = (calls[call.index ?? 0] ||= { name: "", arguments: "" });
            if (call.function?.name) slot.name += call.function.name;
            if (call.function?.arguments) slot.arguments += call.function.arguments;
            callsView.textContent = calls.map((c) => `${c.name}(${c.arguments})`).join("\n");
          }
        },
        controller.signal,
      );
    } catch (error) {
      failed = error.name === "AbortError" ? "Stopped." : error instanceof ApiError ? error.message : String(error.message || error);
    } finally {
      controller = null;
      send.disabled = false;
      stop.disabled = true;
    }
    if (failed) {
      answer.node.dataset.state = "error";
      answer.node.append(notice(failed, "error"));
    } else {
      answer.node.dataset.state = "done";
    }
    history.push({ role: "assistant", content: answer.content.textContent });
  }

  clear(
    root,
    h(
      "div.playground",
      {},
      h(
        "div",
        {},
        conversation,
        h(
          "form.panel",
          { id: "chat-form", onsubmit: ask },
          prompt,
          h("div.actions", {}, send, stop, button("New conversation", () => {
            history.length = 0;
            conversation.replaceChildren();
          })),
        ),
        status,
      ),
      h(
        "aside.panel",
        {},
        keyPicker,
        field("Model", modelSelect),
        field("System prompt", system),
        h("div.grid", {}, field("Max tokens", maxTokens), field("Temperature", temperature)),
        h("details", {}, h("summary", { text: "Tools (JSON)" }), field("Tools", tools), field("Tool choice", toolChoice)),
      ),
    ),
  );
  prompt.focus();
});
