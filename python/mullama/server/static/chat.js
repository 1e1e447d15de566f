// The chat page: one conversation streamed from /v1/chat/completions over SSE. fetch with an
// AbortController, not EventSource: Stop aborts the request, the server sees the client leave
// and stops computing within one token. Everything here talks to this server only.
import { escapeHtml, renderMarkdown } from "./markdown.js";

const KEY_STORAGE = "mullama.apiKey"; // sessionStorage: the key lives as long as the tab
const SETTINGS_STORAGE = "mullama.settings"; // localStorage: sampling settings between visits
const SETTINGS = ["temperature", "max-tokens", "top-p", "seed", "timeout", "stop", "system"];
const TICK_MS = 100; // how often the phase and statistics lines refresh while a reply runs

const $ = (id) => document.getElementById(id);
const log = $("log");
const promptBox = $("prompt");
const sendButton = $("send");
const stopButton = $("stop-button");
const modelSelect = $("model");
const statusLine = $("status");
const phaseText = $("phase");
const statsText = $("stats");

/** The turns sent with every request: {role, content}, user and assistant alternating. */
const conversation = [];
/** The reply being streamed, or null. */
let running = null;
/** Counts "New chat"s: a turn that ends after one leaves the new conversation alone. */
let chatNumber = 0;

// -- errors --------------------------------------------------------------------------------------
/** A refusal or failure to show in the page. */
class PageError extends Error {
  constructor(title, message, { hint = "", retryAfterS = null, retry = false } = {}) {
    super(message);
    this.title = title;
    this.hint = hint;
    this.retryAfterS = retryAfterS;
    this.retry = retry || retryAfterS !== null;
  }
}

/** The PageError for a server's error JSON (OpenAI's {error: {message, type, code}}). */
function serverError(status, error, retryAfterS) {
  const message = (error && error.message) || `HTTP ${status}`;
  const code = error && error.code;
  if (code === "context_length_exceeded") {
    return new PageError("Too long for the model's context", message, {
      hint: "Start a new chat, shorten the message, or lower Max tokens.",
    });
  }
  if (code === "shutting_down") {
    return new PageError("The server is shutting down", message, { retryAfterS, retry: true });
  }
  if (status === 503) {
    return new PageError("The server is busy", message, { retryAfterS, retry: true });
  }
  if (status === 408 || status === 504) {
    return new PageError("Timed out", message, { retry: true });
  }
  if (status === 401) {
    return new PageError("API key needed", message, { hint: "Reload the page to enter a key." });
  }
  return new PageError(status ? `Error ${status}` : "Error", message);
}

async function httpError(response) {
  let error = null;
  try {
    error = (await response.json()).error;
  } catch {
    // not JSON: the status says it
  }
  if (typeof error === "string") error = { message: error }; // the Ollama spelling
  return serverError(response.status, error, retryAfter(response));
}

function retryAfter(response) {
  const value = response.headers.get("Retry-After");
  if (value === null) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const when = Date.parse(value); // the header may also be an HTTP date
  return Number.isNaN(when) ? null : Math.max(0, Math.ceil((when - Date.now()) / 1000));
}

// -- the API key -----------------------------------------------------------------------------------
const keyDialog = $("key-dialog");
const keyInput = $("key-input");
const keyError = $("key-error");

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** Asks for the key (saying why, when one was refused); resolves false if the user cancels. */
function askForKey(refusal) {
  keyError.hidden = !refusal;
  keyError.textContent = refusal || "";
  keyInput.value = "";
  keyDialog.returnValue = ""; // Esc keeps the last value: only a submit sets "save"
  keyDialog.showModal();
  return new Promise((resolve) => {
    keyDialog.addEventListener(
      "close",
      () => {
        const key = keyInput.value.trim();
        if (keyDialog.returnValue === "save" && key) {
          sessionStorage.setItem(KEY_STORAGE, key);
          resolve(true);
        } else {
          resolve(false);
        }
      },
      { once: true },
    );
  });
}

/** fetch on this server with the API key; a 401 asks for the key and tries again
 * (`onAsk(true)` before asking, `onAsk(false)` after: a turn's timeout pauses meanwhile). */
async function apiFetch(path, options = {}, onAsk = () => {}) {
  for (;;) {
    const headers = { ...(options.headers || {}), ...authHeaders() };
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    const refused = sessionStorage.getItem(KEY_STORAGE) !== null;
    let message = "";
    try {
      message = (await response.json()).error.message;
    } catch {
      // keep the plain wording
    }
    sessionStorage.removeItem(KEY_STORAGE);
    const why = refused ? `The server refused that key: ${message || "401 Unauthorized"}` : "";
    onAsk(true);
    const given = await askForKey(why);
    onAsk(false);
    if (!given) {
      throw serverError(401, { message: message || "this server needs an API key" }, null);
    }
  }
}

// -- the conversation view -----------------------------------------------------------------------
function addMessage(role, text) {
  $("empty")?.remove();
  const el = document.createElement("article");
  el.className = `message ${role}`;
  const body = document.createElement("div");
  body.className = "body";
  if (role === "user") body.textContent = text;
  else body.innerHTML = renderMarkdown(text);
  el.append(body);
  log.append(el);
  scrollToEnd();
  return el;
}

function addCopyButton(el, text) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy-reply";
  button.textContent = "Copy";
  button.title = "Copy this reply as Markdown";
  button.addEventListener("click", () => copyText(text, button));
  el.append(button);
}

function showError(error) {
  const el = document.createElement("div");
  el.className = "message error";
  el.setAttribute("role", "alert");
  el.innerHTML =
    `<strong>${escapeHtml(error.title)}</strong> <span class="detail">${escapeHtml(error.message)}</span>` +
    (error.hint ? ` <span class="hint">${escapeHtml(error.hint)}</span>` : "");
  log.append(el);
  scrollToEnd();
  return el;
}

function scrollToEnd() {
  log.scrollTop = log.scrollHeight;
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (plain http to another host is not a secure context): the old way.
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = label), 1200);
}

log.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy-code");
  if (button) copyText(button.parentElement.querySelector("code").textContent, button);
});

// -- status and statistics -------------------------------------------------------------------------
function setPhase(phase, text) {
  statusLine.dataset.phase = phase;
  phaseText.textContent = text;
}

function showStats(turn) {
  const now = performance.now();
  const parts = [];
  const data = statsText.dataset;
  if (turn.firstAt === null) {
    if (running === turn) {
      const waited = ((now - turn.sentAt) / 1000).toFixed(1);
      setPhase(turn.phase, `${turn.phase === "waiting" ? "waiting for the server" : "reading the prompt"}... ${waited} s`);
    }
  } else {
    const ttft = turn.firstAt - turn.sentAt;
    data.ttftMs = ttft.toFixed(0);
    parts.push(`first token ${(ttft / 1000).toFixed(2)} s`);
    const tokens = turn.usage ? turn.usage.completion_tokens : turn.tokens;
    // The rate after the first token: the decode speed, without the prompt's reading time.
    const span = (turn.lastAt - turn.firstAt) / 1000;
    if (tokens >= 2 && span > 0) {
      const rate = (tokens - 1) / span;
      data.tokensPerSecond = rate.toFixed(1);
      parts.push(`${rate.toFixed(1)} tok/s`);
    }
    data.tokens = String(tokens);
    parts.push(`${tokens} token${tokens === 1 ? "" : "s"}`);
  }
  if (turn.usage) {
    const cached = turn.usage.prompt_tokens_details?.cached_tokens;
    data.promptTokens = String(turn.usage.prompt_tokens);
    let prompt = `prompt ${turn.usage.prompt_tokens} tokens`;
    if (typeof cached === "number") {
      data.cachedTokens = String(cached);
      prompt += ` (${cached} reused from the cache)`;
    }
    parts.push(prompt);
  }
  if (turn.finish) parts.push(`finish: ${turn.finish}`);
  statsText.textContent = parts.join(" · ");
}

function clearStats() {
  statsText.textContent = "";
  for (const key of Object.keys(statsText.dataset)) delete statsText.dataset[key];
}

// -- settings -------------------------------------------------------------------------------------
function restoreSettings() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(SETTINGS_STORAGE) || "{}");
  } catch {
    // a damaged entry: the defaults
  }
  for (const id of SETTINGS) if (typeof saved[id] === "string") $(id).value = saved[id];
  for (const id of SETTINGS) $(id).addEventListener("change", saveSettings);
}

function saveSettings() {
  const values = Object.fromEntries(SETTINGS.map((id) => [id, $(id).value]));
  localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(values));
}

function numberSetting(id) {
  const raw = $(id).value.trim();
  return raw === "" ? undefined : Number(raw);
}

function requestBody() {
  const messages = [...conversation];
  const system = $("system").value.trim();
  if (system) messages.unshift({ role: "system", content: system });
  const stop = $("stop").value.split("\n").filter((s) => s !== "");
  const body = {
    model: modelSelect.value || undefined,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: numberSetting("temperature"),
    max_tokens: numberSetting("max-tokens"),
    top_p: numberSetting("top-p"),
    seed: numberSetting("seed"),
    stop: stop.length ? stop : undefined,
  };
  return JSON.stringify(body); // undefined fields are left out: the server's defaults apply
}

// -- one turn ----------------------------------------------------------------------------------------
function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
}

async function send() {
  const text = promptBox.value;
  if (running || !text.trim()) return;
  promptBox.value = "";
  for (const button of log.querySelectorAll("button.retry")) button.remove(); // a new turn now
  const message = { role: "user", content: text };
  const userEl = addMessage("user", text);
  await runTurn(message, userEl);
}

async function runTurn(message, userEl) {
  const chat = chatNumber;
  conversation.push(message);
  userEl.classList.remove("unanswered");
  const el = addMessage("assistant", "");
  el.classList.add("pending");
  const turn = {
    controller: new AbortController(),
    el,
    body: el.querySelector(".body"),
    text: "",
    tokens: 0,
    phase: "waiting",
    sentAt: performance.now(),
    firstAt: null,
    lastAt: null,
    usage: null,
    finish: null,
    stopped: false,
    timedOut: false,
    rendering: false,
  };
  running = turn;
  setBusy(true);
  clearStats();
  const timeoutS = numberSetting("timeout");
  let idleTimer = null;
  const stillAlive = () => {
    clearTimeout(idleTimer);
    if (timeoutS > 0) {
      idleTimer = setTimeout(() => {
        turn.timedOut = true;
        turn.controller.abort();
      }, timeoutS * 1000);
    }
  };
  const ticker = setInterval(() => showStats(turn), TICK_MS);
  let failure = null;
  try {
    stillAlive();
    showStats(turn);
    const request = {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: requestBody(),
      signal: turn.controller.signal,
    };
    const pause = (asking) => (asking ? clearTimeout(idleTimer) : stillAlive());
    const response = await apiFetch("/v1/chat/completions", request, pause);
    if (!response.ok) throw await httpError(response);
    // Headers arrive once the server has taken the request; the first token follows the
    // prompt's prefill (the OpenAI stream has no event in between).
    turn.phase = "prefill";
    showStats(turn);
    await readStream(response, turn, stillAlive);
  } catch (error) {
    failure = explain(error, turn, timeoutS);
  } finally {
    clearTimeout(idleTimer);
    clearInterval(ticker);
    running = null;
    setBusy(false);
  }
  if (chat !== chatNumber) return; // "New chat" was pressed meanwhile: this turn is gone
  render(turn);
  el.classList.remove("pending");
  showStats(turn);
  if (turn.text) {
    // A stopped reply stays in the conversation as far as it got: the next turn builds on it.
    conversation.push({ role: "assistant", content: turn.text });
    addCopyButton(el, turn.text);
  } else {
    // Nothing came back: the message is not part of the conversation; it goes back to the box.
    conversation.pop();
    el.remove();
    userEl.classList.add("unanswered");
    if (!promptBox.value) promptBox.value = message.content;
  }
  if (turn.stopped) {
    el.classList.add("stopped");
    setPhase("stopped", "stopped");
  } else if (failure) {
    setPhase("error", failure.title);
    const errorEl = showError(failure);
    if (failure.retry && !turn.text) addRetry(errorEl, failure, message, userEl);
  } else {
    setPhase("done", turn.finish === "length" ? "done (stopped at max tokens)" : "done");
  }
  promptBox.focus();
}

function explain(error, turn, timeoutS) {
  if (error instanceof PageError) return error;
  if (error.name === "AbortError") {
    if (turn.timedOut) {
      return new PageError("Timed out", `the server sent nothing for ${timeoutS} s`, {
        hint: "Raise the timeout in Settings for long prompts on a slow machine.",
        retry: true,
      });
    }
    turn.stopped = true;
    return null;
  }
  if (error instanceof TypeError) {
    return new PageError("Cannot reach the server", error.message, {
      hint: "Is mullama serve still running?",
      retry: true,
    });
  }
  return new PageError("Error", String(error.message || error));
}

function addRetry(errorEl, failure, message, userEl) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "retry";
  let wait = Math.ceil(failure.retryAfterS || 0);
  const label = () => (wait > 0 ? `Retry in ${wait} s` : "Retry");
  button.textContent = label();
  button.disabled = wait > 0;
  if (wait > 0) {
    errorEl.dataset.retryAfter = String(wait);
    const countdown = setInterval(() => {
      wait -= 1;
      button.textContent = label();
      if (wait <= 0) {
        clearInterval(countdown);
        button.disabled = false;
      }
    }, 1000);
  }
  button.addEventListener("click", () => {
    if (running) return;
    errorEl.remove();
    if (promptBox.value === message.content) promptBox.value = "";
    runTurn(message, userEl);
  });
  errorEl.append(" ", button);
}

/** Reads the SSE body: `data: {json}` events until `data: [DONE]`. */
async function readStream(response, turn, stillAlive) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    stillAlive();
    // Line ends as \n (a \r last in the buffer waits: its \n may be in the next read).
    buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n|\r(?!$)/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data === "[DONE]") return;
      if (data) onChunk(JSON.parse(data), turn);
    }
  }
}

function onChunk(chunk, turn) {
  if (chunk.error) throw serverError(0, chunk.error, null); // an error after the stream began
  if (chunk.usage) turn.usage = chunk.usage;
  const choice = chunk.choices && chunk.choices[0];
  if (!choice) return;
  if (choice.finish_reason) turn.finish = choice.finish_reason;
  const piece = choice.delta && choice.delta.content;
  if (!piece) return;
  const now = performance.now();
  if (turn.firstAt === null) {
    turn.firstAt = now;
    turn.phase = "generating";
    setPhase("generating", "generating...");
  }
  turn.lastAt = now;
  turn.tokens += 1; // one chunk per token; the usage chunk at the end has the exact count
  turn.text += piece;
  scheduleRender(turn);
}

/** Renders the reply once per animation frame however many tokens arrived since the last. */
function scheduleRender(turn) {
  if (turn.rendering) return;
  turn.rendering = true;
  requestAnimationFrame(() => {
    turn.rendering = false;
    render(turn);
  });
}

function render(turn) {
  const nearEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  turn.body.innerHTML = renderMarkdown(turn.text);
  if (nearEnd) scrollToEnd(); // follow the reply unless the reader scrolled up
}

function stop() {
  if (running) running.controller.abort();
}

function newChat() {
  stop();
  chatNumber += 1;
  conversation.length = 0;
  log.replaceChildren();
  clearStats();
  setPhase("idle", "");
  promptBox.focus();
}

// -- models ----------------------------------------------------------------------------------------
async function loadModels() {
  try {
    const response = await apiFetch("/v1/models");
    if (!response.ok) throw await httpError(response);
    const models = (await response.json()).data || [];
    modelSelect.replaceChildren(
      ...models.map((m) => {
        const option = document.createElement("option");
        option.value = option.textContent = m.id;
        return option;
      }),
    );
    modelSelect.dataset.loaded = "true";
  } catch (error) {
    modelSelect.replaceChildren(new Option("(no model list)", ""));
    showError(explain(error, {}, 0) || new PageError("Error", "the model list did not load"));
  }
}

// -- wiring ----------------------------------------------------------------------------------------
$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
promptBox.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && running) {
    event.preventDefault();
    stop();
  }
});
stopButton.addEventListener("click", stop);
$("new-chat").addEventListener("click", newChat);

setPhase("idle", "");
restoreSettings();
loadModels();
