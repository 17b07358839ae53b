// piapi-mcp's task card: an MCP App (io.modelcontextprotocol/ui) that shows one PiAPI task.
//
// It reads the tool's input (what was asked) and its result's structuredContent (piapi_mcp.models.TaskResult),
// follows a running task by asking the host to call get_task (each call waits server-side, so calls are
// chained, never polled in a loop), and plays the outputs. It fetches nothing itself: the only network
// loads are the media URLs of the result, which the host's CSP limits to the declared origins.
import {
  App,
  PostMessageTransport,
  applyDocumentTheme,
  applyHostFonts,
  applyHostStyleVariables,
  type McpUiHostContext,
} from "@modelcontextprotocol/ext-apps";

/** One output of a task (piapi_mcp.models.OutputRef). */
interface OutputRef {
  url?: string | null;
  kind: string;
  mime_type?: string | null;
  path?: string | null;
  save_error?: string | null;
  text?: string | null;
}

/** A follow-up offered by the server (piapi_mcp.models.NextAction): run_task's arguments and a label. */
interface NextAction {
  label: string;
  model: string;
  task_type: string;
  input: Record<string, unknown>;
}

/** What every piapi-mcp task tool returns as structuredContent (piapi_mcp.models.TaskResult). */
interface TaskResult {
  task_id: string;
  model?: string | null;
  task_type?: string | null;
  status: string;
  done: boolean;
  outputs: OutputRef[];
  error?: { code?: number | null; message: string } | null;
  elapsed_seconds?: number | null;
  eta_seconds?: number | null;
  next?: string | null;
  simulated?: boolean;
  reused?: boolean;
  estimated_usd?: number | null;
  cost_usd?: number | null;
  next_actions?: NextAction[];
}

/** The parts of a CallToolResult the card reads. */
interface ToolResult {
  content?: unknown[];
  structuredContent?: unknown;
  isError?: boolean;
}

/** The server's own wait per get_task call when its hint names none (piapi_mcp.config.DEFAULT_WAIT_SECONDS). */
const DEFAULT_WAIT_SECONDS = 45;
/** Two get_task calls never start closer than this, even when the host answers at once. */
const MIN_GAP_MS = 3000;
/** After this many failed get_task calls in a row, the card stops following and says so. */
const MAX_FAILURES = 3;

const card = document.getElementById("card") as HTMLElement;
const viewer = document.getElementById("viewer") as HTMLDialogElement;
const viewerImage = document.getElementById("viewer-image") as HTMLImageElement;
(document.getElementById("viewer-close") as HTMLButtonElement).addEventListener("click", () => viewer.close());
viewer.addEventListener("close", () => {
  if (app.getHostContext()?.displayMode === "fullscreen") void app.requestDisplayMode({ mode: "inline" }).catch(() => undefined);
});
viewer.addEventListener("click", (event) => {
  if (event.target === viewer) viewer.close();
});

let args: Record<string, unknown> = {};
let task: TaskResult | null = null;
let problem: string | null = null;
let notice: string | null = null;
let receivedAt = Date.now();
let generation = 0;
let busy = false;

const app = new App({ name: "piapi-mcp task card", version: "1.0.0" }, {});

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string>> = {},
  ...children: (Node | string | null)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null) node.append(child);
  return node;
}

function isTaskResult(value: unknown): value is TaskResult {
  const v = value as TaskResult | null;
  return (
    typeof v === "object" && v !== null && typeof v.task_id === "string" && typeof v.status === "string" &&
    typeof v.done === "boolean" && Array.isArray(v.outputs)
  );
}

/** Only http(s) URLs are ever put in the page (no javascript:, data: or file: from a result). */
function safeUrl(url: string | null | undefined): string | null {
  return typeof url === "string" && /^https?:\/\/[^\s]+$/i.test(url) ? url : null;
}

function textOf(result: ToolResult): string {
  const texts = (result.content ?? [])
    .map((block) => (block as { type?: string; text?: string }))
    .filter((block) => block.type === "text" && typeof block.text === "string")
    .map((block) => block.text as string);
  return texts.join("\n").trim();
}

function promptOf(values: Record<string, unknown>): string | null {
  const nested = values.input as Record<string, unknown> | undefined;
  const prompt = values.prompt ?? (typeof nested === "object" && nested !== null ? nested.prompt : undefined);
  return typeof prompt === "string" && prompt.trim() ? prompt.trim() : null;
}

function seconds(value: number): string {
  const s = Math.max(0, Math.round(value));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
}

function usd(value: number): string {
  return `$${value < 0.01 ? value.toFixed(4) : value.toFixed(value < 1 ? 3 : 2)}`;
}

/** The wait the server itself asks for (its `next` hint names wait_seconds), else its default. */
function waitSecondsOf(result: TaskResult): number {
  const match = /"wait_seconds":\s*(\d+(?:\.\d+)?)/.exec(result.next ?? "");
  const wait = match ? Number(match[1]) : DEFAULT_WAIT_SECONDS;
  return wait > 0 ? wait : DEFAULT_WAIT_SECONDS;
}

function canCallTools(): boolean {
  return app.getHostCapabilities()?.serverTools !== undefined;
}

/** Progress as a fraction (null: unknown) and its words, moved on by the time since the last answer. */
function progressOf(result: TaskResult): { fraction: number | null; words: string } {
  const since = Math.max(0, (Date.now() - receivedAt) / 1000);
  const elapsed = result.elapsed_seconds != null ? result.elapsed_seconds + since : null;
  const parts = [result.status];
  if (elapsed !== null) parts.push(`${seconds(elapsed)} elapsed`);
  if (result.eta_seconds == null || elapsed === null) return { fraction: null, words: parts.join(" · ") };
  const left = Math.max(0, result.eta_seconds - since);
  parts.push(left > 0 ? `about ${seconds(left)} left` : "any moment now");
  const fraction = Math.min(0.97, elapsed / Math.max(elapsed + left, 0.001));
  return { fraction, words: parts.join(" · ") };
}

function renderProgress(result: TaskResult): HTMLElement {
  const { fraction, words } = progressOf(result);
  const bar = el("div", { class: "bar" });
  const track = el("div", {
    class: fraction === null ? "progress indeterminate" : "progress",
    role: "progressbar",
    "aria-label": "Task progress",
    "aria-valuemin": "0",
    "aria-valuemax": "100",
    "aria-valuetext": words,
  }, bar);
  if (fraction !== null) {
    const percent = Math.round(fraction * 100);
    track.setAttribute("aria-valuenow", String(percent));
    bar.style.width = `${percent}%`;
  }
  return el("section", { class: "running", "aria-label": "Progress" }, track, el("p", { class: "muted eta", text: words }));
}

function tick(): void {
  if (!task || task.done) return;
  const { fraction, words } = progressOf(task);
  const track = card.querySelector<HTMLElement>(".progress");
  const eta = card.querySelector<HTMLElement>(".eta");
  if (eta) eta.textContent = words;
  if (track && fraction !== null) {
    const percent = Math.round(fraction * 100);
    track.setAttribute("aria-valuenow", String(percent));
    track.setAttribute("aria-valuetext", words);
    (track.firstElementChild as HTMLElement).style.width = `${percent}%`;
  }
}

function openLink(event: Event, url: string): void {
  if (app.getHostCapabilities()?.openLinks === undefined) return;
  event.preventDefault();
  void app.openLink({ url }).catch(() => undefined);
}

function link(url: string, words: string): HTMLAnchorElement {
  const a = el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: words });
  a.addEventListener("click", (event) => openLink(event, url));
  return a;
}

function savedLine(output: OutputRef): HTMLElement | null {
  if (output.path) return el("p", { class: "muted saved", text: `Saved to ${output.path}` });
  if (output.save_error) return el("p", { class: "muted saved", text: `Not saved: ${output.save_error}` });
  return null;
}

function renderImage(output: OutputRef, n: number, alt: string): HTMLElement {
  const url = safeUrl(output.url) as string;
  const img = el("img", { src: url, alt, loading: "lazy" });
  const button = el("button", { type: "button", class: "thumb", "aria-label": `Enlarge image ${n}` }, img);
  button.addEventListener("click", () => {
    viewerImage.src = url;
    viewerImage.alt = alt;
    viewer.showModal();
    // The card's frame is only as big as the card: a host that can show it full screen makes room.
    if (app.getHostContext()?.availableDisplayModes?.includes("fullscreen")) {
      void app.requestDisplayMode({ mode: "fullscreen" }).catch(() => undefined);
    }
  });
  return el("figure", { class: "output image", style: "margin:0" }, button, savedLine(output));
}

function renderOutputs(result: TaskResult, prompt: string | null): HTMLElement | null {
  if (!result.outputs.length) return null;
  const what = prompt ?? `PiAPI task ${result.task_id}`;
  const images = result.outputs
    .map((output, i) => ({ output, n: i + 1 }))
    .filter(({ output }) => output.kind === "image" && safeUrl(output.url));
  const has3d = result.outputs.some((output) => output.kind === "model3d" && safeUrl(output.url));
  const list = el("section", { class: "outputs", "aria-label": "Outputs" });
  result.outputs.forEach((output, i) => {
    const n = i + 1;
    const url = safeUrl(output.url);
    if (output.kind === "text" || (!url && output.text)) {
      list.append(el("div", { class: "output wide" }, el("pre", { class: "text", text: output.text ?? "" })));
    } else if (!url) {
      return;
    } else if (output.kind === "image") {
      // A 3D task's images are its cover, shown beside the download.
      if (has3d) return;
      const figure = renderImage(output, n, images.length > 1 ? `${what} (image ${n})` : what);
      if (images.length === 1) figure.classList.add("wide");
      list.append(figure);
    } else if (output.kind === "video") {
      const video = el("video", { src: url, controls: "", preload: "metadata", playsinline: "", "aria-label": `Video: ${what}` });
      list.append(el("div", { class: "output wide video" }, video, savedLine(output)));
    } else if (output.kind === "audio") {
      const audio = el("audio", { src: url, controls: "", preload: "metadata", "aria-label": `Audio: ${what}` });
      list.append(el("div", { class: "output wide audio" }, audio, savedLine(output)));
    } else {
      const extension = /\.([a-z0-9]{1,5})(?:[?#]|$)/i.exec(url)?.[1]?.toUpperCase();
      const words = output.kind === "model3d" ? "Download the 3D model" : "Download the file";
      const cover = output.kind === "model3d" && images.length ? images[0] : null;
      list.append(el(
        "div",
        { class: `output wide ${output.kind === "model3d" ? "model3d" : "file"}` },
        cover ? el("img", { src: safeUrl(cover.output.url) as string, alt: `Cover of the 3D model: ${what}` }) : null,
        el("div", {}, link(url, extension ? `${words} (${extension})` : words), savedLine(output)),
      ));
    }
  });
  return list;
}

function costLine(result: TaskResult): HTMLElement | null {
  const parts: string[] = [];
  if (result.cost_usd != null) parts.push(`Cost ${usd(result.cost_usd)}`);
  else if (result.estimated_usd != null && !result.done) parts.push(`Listed price ${usd(result.estimated_usd)}`);
  else if (result.estimated_usd != null && result.status === "completed") {
    parts.push(`Listed price ${usd(result.estimated_usd)} (PiAPI reported no charge)`);
  }
  if (result.simulated) parts.push("simulated, no credits used");
  if (result.reused) parts.push("an identical recent task, reused");
  return parts.length ? el("p", { class: "muted cost", text: parts.join(" · ") }) : null;
}

function renderActions(result: TaskResult): HTMLElement | null {
  if (result.status !== "completed" || !canCallTools()) return null;
  const box = el("section", { class: "follow-ups", "aria-label": "Next" });
  const actions = result.next_actions ?? [];
  if (actions.length) {
    const row = el("div", { class: "actions" });
    for (const action of actions) {
      const button = el("button", { type: "button", class: "next-action", text: action.label });
      button.addEventListener("click", () => {
        void callTool("run_task", { model: action.model, task_type: action.task_type, input: action.input }, action.label);
      });
      row.append(button);
    }
    box.append(row);
  }
  const images = result.outputs.map((output, i) => ({ output, n: i + 1 })).filter(({ output }) => output.kind === "image" && safeUrl(output.url));
  // A 3D task's images are its cover, not something to edit.
  const has3d = result.outputs.some((output) => output.kind === "model3d");
  if (images.length && !has3d) {
    // No <form>: hosts' sandboxes rarely allow form submission, so the button and Enter do the work.
    const form = el("div", { class: "edit", role: "group", "aria-label": "Edit again" });
    const input = el("input", { id: "edit-prompt", type: "text", placeholder: "What to change", value: "" });
    form.append(el("label", { for: "edit-prompt", text: "Edit again: what to change in the picture" }), input);
    let choice: HTMLSelectElement | null = null;
    if (images.length > 1) {
      choice = el("select", { "aria-label": "Which image" });
      for (const { n } of images) choice.append(el("option", { value: String(n), text: `Image ${n}` }));
      form.append(choice);
    }
    const submit = el("button", { type: "button", class: "edit-again", text: "Edit again" });
    form.append(submit);
    const edit = (): void => {
      const instruction = input.value.trim();
      if (!instruction) return input.focus();
      const n = choice ? Number(choice.value) : images[0].n;
      void callTool("kontext_edit", { prompt: instruction, image: `piapi://tasks/${result.task_id}#${n}` }, "Edit again");
    };
    submit.addEventListener("click", edit);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") edit();
    });
    box.append(form);
  }
  return box.childElementCount ? box : null;
}

function render(): void {
  const prompt = promptOf(args);
  const nodes: (HTMLElement | null)[] = [];
  const model = task?.model ?? (typeof args.model === "string" ? args.model : null);
  const heading = prompt ?? (task ? `PiAPI task ${task.task_id}` : "PiAPI task");
  const facts = [model, task?.task_type, task ? `task ${task.task_id}` : null].filter(Boolean).join(" · ");
  const head = el("header", { class: "head" }, el("h1", { class: "prompt", text: heading }));
  if (task) head.append(el("span", { class: `badge ${task.status}`, text: task.status }));
  if (facts) head.append(el("span", { class: "muted facts", text: facts }));
  nodes.push(head);
  if (task) {
    if (!task.done) {
      nodes.push(renderProgress(task));
      if (!canCallTools() && task.next) nodes.push(el("p", { class: "muted", text: task.next }));
    } else if (task.status === "failed") {
      const code = task.error?.code ? ` (code ${task.error.code})` : "";
      const message = task.error?.message || "PiAPI gave no reason";
      nodes.push(el("p", { class: "problem failed", role: "alert", text: `PiAPI task failed${code}: ${message}` }));
    } else if (task.status === "cancelled") {
      nodes.push(el("p", { class: "problem cancelled", role: "alert", text: "This task was cancelled, so it produced nothing." }));
    } else if (task.status === "completed" && !task.outputs.length) {
      nodes.push(el("p", { class: "muted", text: "PiAPI returned no output." }));
    }
    nodes.push(renderOutputs(task, prompt), costLine(task), renderActions(task));
  } else if (!problem) {
    nodes.push(el("p", { class: "muted", text: "Waiting for the task…" }));
  }
  if (problem) nodes.push(el("p", { class: "problem", role: "alert", text: problem }));
  if (notice) nodes.push(el("p", { class: "muted notice", role: "status", text: notice }));
  card.replaceChildren(...nodes.filter((node): node is HTMLElement => node !== null));
  for (const button of card.querySelectorAll<HTMLButtonElement>("button.next-action, button.edit-again")) button.disabled = busy;
}

/** Shows a tool result; follows its task with chained get_task calls while it runs. */
function show(result: ToolResult): void {
  if (isTaskResult(result.structuredContent)) {
    const previous = task?.task_id;
    task = result.structuredContent;
    problem = null;
    receivedAt = Date.now();
    render();
    if (!task.done && canCallTools() && task.task_id !== previous) void follow(task.task_id, ++generation);
  } else {
    problem = textOf(result) || "The tool returned no task.";
    render();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function follow(taskId: string, mine: number): Promise<void> {
  let failures = 0;
  while (mine === generation && task && task.task_id === taskId && !task.done) {
    const started = Date.now();
    const wait = waitSecondsOf(task);
    try {
      const result = (await app.callServerTool(
        { name: "get_task", arguments: { task_id: taskId, wait_seconds: wait } },
        { timeout: (wait + 60) * 1000 },
      )) as ToolResult;
      if (mine !== generation) return;
      if (!isTaskResult(result.structuredContent)) {
        problem = textOf(result) || "get_task returned no task.";
        render();
        return;
      }
      failures = 0;
      notice = null;
      task = result.structuredContent;
      receivedAt = Date.now();
      render();
    } catch {
      failures += 1;
      if (failures >= MAX_FAILURES) {
        notice = `Stopped following the task after ${failures} failed checks; ask for task ${taskId} again.`;
        render();
        return;
      }
    }
    // The server waits inside each call; this floor only guards against a host that answers at once.
    const gap = MIN_GAP_MS * 2 ** failures - (Date.now() - started);
    if (gap > 0) await sleep(gap);
  }
}

async function callTool(name: string, toolArgs: Record<string, unknown>, label: string): Promise<void> {
  if (busy) return;
  busy = true;
  notice = `${label}: starting…`;
  render();
  try {
    const result = (await app.callServerTool({ name, arguments: toolArgs }, { timeout: 15 * 60 * 1000 })) as ToolResult;
    busy = false;
    notice = null;
    if (isTaskResult(result.structuredContent)) {
      const inner = toolArgs.input as Record<string, unknown> | undefined;
      args = { ...(inner ?? {}), ...toolArgs };
      delete args.input;
      if (inner && !args.prompt && inner.prompt) args.prompt = inner.prompt;
      show(result);
      if (app.getHostCapabilities()?.updateModelContext !== undefined) {
        const text = `From the piapi-mcp task card, the user ran ${name} (${label}):\n${textOf(result)}`;
        void app.updateModelContext({ content: [{ type: "text", text }] }).catch(() => undefined);
      }
    } else {
      notice = `${label} did not start: ${textOf(result) || "no reason given"}`;
      render();
    }
  } catch (error) {
    busy = false;
    notice = `${label} did not start: ${error instanceof Error ? error.message : String(error)}`;
    render();
  }
}

function applyContext(context: McpUiHostContext | undefined): void {
  if (!context) return;
  if (context.theme) applyDocumentTheme(context.theme);
  if (context.styles?.variables) applyHostStyleVariables(context.styles.variables);
  if (context.styles?.css?.fonts) applyHostFonts(context.styles.css.fonts);
}

app.ontoolinput = (params) => {
  args = params.arguments ?? {};
  render();
};
app.ontoolresult = (params) => show(params as ToolResult);
app.ontoolcancelled = (params) => {
  if (!task) {
    problem = `The tool call was cancelled${params.reason ? ` (${params.reason})` : ""}.`;
    render();
  }
};
app.onhostcontextchanged = (context) => applyContext(context);
app.onteardown = async () => {
  generation += 1;
  return {};
};

applyDocumentTheme(window.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light");
setInterval(tick, 1000);
app
  .connect(new PostMessageTransport(window.parent, window.parent))
  .then(() => {
    applyContext(app.getHostContext());
    render();
  })
  .catch((error: unknown) => {
    problem = `Could not connect to the host: ${error instanceof Error ? error.message : String(error)}`;
    render();
  });
