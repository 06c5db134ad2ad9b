// onnxplain explorer: the page's logic, plain JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { width: 0, height: 0, points: [], box: null, paint: null, job: null, map: null, segment: null };
window.onnxplainShown = null; // the map on screen: {job, shape, values}, read by the tests

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function fill(select, items, keep) {
  select.innerHTML = "";
  for (const item of items) {
    const option = document.createElement("option");
    option.value = item.id || item.name;
    option.textContent = item.name;
    select.appendChild(option);
  }
  if (keep) select.value = keep;
}

async function loadLists(keepModel, keepImage) {
  await fill($("model"), await (await api("/api/models")).json(), keepModel);
  await fill($("image"), await (await api("/api/images")).json(), keepImage);
}

async function loadMethods() {
  const methods = (await (await api("/api/methods")).json()).filter((m) => !m.needs.includes("gradients"));
  state.methods = Object.fromEntries(methods.map((m) => [m.name, m]));
  await fill($("method"), methods.map((m) => ({ name: m.name })), methods.some((m) => m.name === "rise") ? "rise" : null);
  showParameters();
}

async function loadModelInfo() {
  try {
    const info = await (await api(`/api/models/${encodeURIComponent($("model").value)}/info`)).json();
    await fill($("output"), info.outputs.map((name) => ({ name })), info.output);
    await fill($("layer"), [{ id: "", name: "the method's default" }, ...info.layers.map((name) => ({ name }))]);
  } catch (error) {
    say(error.message, true);
  }
}

function showParameters() {
  const box = $("parameters");
  box.innerHTML = "";
  const method = state.methods[$("method").value];
  $("layer-label").hidden = !method.needs.includes("activations");
  for (const [name, value] of Object.entries(method.parameters)) {
    if (name === "seed" || name === "layer") continue;
    const label = document.createElement("label");
    label.textContent = name;
    const input = document.createElement("input");
    input.name = name;
    input.dataset.default = value === null ? "" : String(value);
    input.value = input.dataset.default;
    input.placeholder = value === null ? "default" : "";
    label.appendChild(input);
    box.appendChild(label);
  }
}

function scale() { return Math.max(1, Math.floor(480 / Math.max(state.width, state.height))); }

function sizeCanvases() {
  for (const canvas of document.querySelectorAll(".stack canvas")) {
    canvas.width = state.width;
    canvas.height = state.height;
    canvas.style.width = `${state.width * scale()}px`;
    canvas.style.height = `${state.height * scale()}px`;
  }
}

async function showImage() {
  const picture = new Image();
  picture.src = `/api/images/${encodeURIComponent($("image").value)}`;
  await picture.decode();
  state.width = picture.naturalWidth;
  state.height = picture.naturalHeight;
  sizeCanvases();
  $("image-canvas").getContext("2d").drawImage(picture, 0, 0);
  clearTarget();
  clearMap();
  await showSegment();
}

async function showSegment() {
  const query = new URLSearchParams({ model: $("model").value, image: $("image").value, output: $("output").value });
  if ($("class-index").value !== "") query.set("class_index", $("class-index").value);
  try {
    const segment = await (await api(`/api/segment?${query}`)).json();
    const picture = new Image();
    picture.src = `data:image/png;base64,${segment.mask}`;
    await picture.decode();
    const scratch = document.createElement("canvas");
    scratch.width = segment.width;
    scratch.height = segment.height;
    scratch.getContext("2d").drawImage(picture, 0, 0);
    state.segment = scratch.getContext("2d").getImageData(0, 0, segment.width, segment.height);
    say(`the model segments ${segment.pixels} pixels of class ${$("class-index").value || "(default)"}` +
        (segment.classes ? ` (${segment.classes} classes)` : ""));
  } catch (error) {
    state.segment = null;
    say(error.message, true);
  }
  drawOutline();
}

function drawOutline() {
  const context = $("outline-canvas").getContext("2d");
  context.clearRect(0, 0, state.width, state.height);
  if (!state.segment || !$("outline").checked) return;
  const { data, width, height } = state.segment;
  const out = context.createImageData(width, height);
  const on = (x, y) => x >= 0 && y >= 0 && x < width && y < height && data[4 * (y * width + x)] > 127;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (on(x, y) && !(on(x - 1, y) && on(x + 1, y) && on(x, y - 1) && on(x, y + 1))) {
        out.data.set([255, 255, 255, 255], 4 * (y * width + x));
      }
    }
  }
  context.putImageData(out, 0, 0);
}

function targetKind() { return document.querySelector("input[name=target]:checked").value; }

function clearTarget() {
  state.points = [];
  state.box = null;
  state.paint = new Uint8Array(state.width * state.height);
  drawTarget();
}

function drawTarget() {
  const context = $("target-canvas").getContext("2d");
  context.clearRect(0, 0, state.width, state.height);
  context.strokeStyle = "magenta";
  context.lineWidth = 1.5;
  for (const [x, y] of state.points) {
    context.beginPath();
    context.arc(x + 0.5, y + 0.5, 4, 0, 2 * Math.PI);
    context.stroke();
  }
  if (state.box) {
    const [x0, y0, x1, y1] = state.box;
    context.strokeStyle = "magenta";
    context.strokeRect(x0 + 0.5, y0 + 0.5, x1 - x0 - 1, y1 - y0 - 1);
  }
  if (state.paint && state.paint.some((v) => v)) {
    const out = context.getImageData(0, 0, state.width, state.height);
    state.paint.forEach((v, i) => { if (v) out.data.set([255, 0, 255, 110], 4 * i); });
    context.putImageData(out, 0, 0);
  }
  const kind = targetKind();
  $("target-summary").textContent = kind === "pixels" ? `${state.points.length} pixels chosen`
    : kind === "box" ? (state.box ? `box ${state.box.join(", ")}` : "drag a box over the image")
    : kind === "mask" ? `${state.paint ? state.paint.reduce((a, b) => a + b, 0) : 0} pixels painted`
    : "every pixel of the segment";
}

function pixelAt(event) {
  const bounds = $("target-canvas").getBoundingClientRect();
  const x = Math.floor((event.clientX - bounds.left) / bounds.width * state.width);
  const y = Math.floor((event.clientY - bounds.top) / bounds.height * state.height);
  return [Math.min(Math.max(x, 0), state.width - 1), Math.min(Math.max(y, 0), state.height - 1)];
}

function paintAt([x, y]) {
  for (let dy = -4; dy <= 4; dy++) {
    for (let dx = -4; dx <= 4; dx++) {
      const px = x + dx, py = y + dy;
      if (px >= 0 && py >= 0 && px < state.width && py < state.height && dx * dx + dy * dy <= 16) {
        state.paint[py * state.width + px] = 1;
      }
    }
  }
}

function listenToTarget() {
  const canvas = $("target-canvas");
  let start = null;
  canvas.addEventListener("mousedown", (event) => {
    const at = pixelAt(event);
    const kind = targetKind();
    if (kind === "pixels") state.points.push(at);
    if (kind === "box") { start = at; state.box = null; }
    if (kind === "mask") { start = at; paintAt(at); }
    drawTarget();
  });
  canvas.addEventListener("mousemove", (event) => {
    if (!start || !(event.buttons & 1)) return;
    const at = pixelAt(event);
    if (targetKind() === "box") {
      state.box = [Math.min(start[0], at[0]), Math.min(start[1], at[1]),
        Math.max(start[0], at[0]) + 1, Math.max(start[1], at[1]) + 1];
    } else if (targetKind() === "mask") paintAt(at);
    drawTarget();
  });
  window.addEventListener("mouseup", () => { start = null; });
}

function paintedPng() {
  const scratch = document.createElement("canvas");
  scratch.width = state.width;
  scratch.height = state.height;
  const context = scratch.getContext("2d");
  const out = context.createImageData(state.width, state.height);
  state.paint.forEach((v, i) => out.data.set(v ? [255, 255, 255, 255] : [0, 0, 0, 255], 4 * i));
  context.putImageData(out, 0, 0);
  return scratch.toDataURL("image/png").split(",")[1];
}

function requestBody() {
  const kind = targetKind();
  const target = kind === "pixels" ? { kind, points: state.points }
    : kind === "box" ? { kind, box: state.box || [] }
    : kind === "mask" ? { kind, png: paintedPng() } : { kind };
  const parameters = {};
  for (const input of $("parameters").querySelectorAll("input")) {
    if (input.value !== input.dataset.default) parameters[input.name] = input.value;
  }
  if (!$("layer-label").hidden && $("layer").value) parameters.layer = $("layer").value;
  return {
    model: $("model").value, image: $("image").value, method: $("method").value, parameters, target,
    output: $("output").value || null,
    class_index: $("class-index").value === "" ? null : Number($("class-index").value), seed: Number($("seed").value),
  };
}

async function run() {
  clearMap();
  $("run").disabled = true;
  try {
    const job = await (await api("/api/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(requestBody()),
    })).json();
    state.job = job;
    $("cancel").disabled = false;
    say(`explaining with ${job.method}...`);
    await follow(job.id);
  } catch (error) {
    say(error.message, true);
  } finally {
    $("run").disabled = false;
    $("cancel").disabled = true;
  }
}

async function follow(id) {
  for (;;) {
    const job = await (await api(`/api/jobs/${id}`)).json();
    $("progress").max = Math.max(job.total, 1);
    $("progress").value = job.done;
    $("job-line").textContent = `${job.status}: ${job.done} of ${job.total} perturbed images`;
    if (job.status === "done") return showMap(job);
    if (job.status === "failed") throw new Error(job.error);
    if (job.status === "cancelled") { say("cancelled"); return; }
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

function jet(v) {
  const c = (x) => Math.round(255 * Math.min(Math.max(x, 0), 1));
  return [c(1.5 - Math.abs(4 * v - 3)), c(1.5 - Math.abs(4 * v - 2)), c(1.5 - Math.abs(4 * v - 1))];
}

async function showMap(job) {
  const response = await api(`/api/jobs/${job.id}/map`);
  const shape = response.headers.get("X-Shape").split(",").map(Number);
  const values = new Float32Array(await response.arrayBuffer());
  state.map = { job: job.id, shape, values };
  window.onnxplainShown = state.map;
  drawMap();
  $("pin").disabled = false;
  $("download").href = `/api/jobs/${job.id}/result.zip`;
  $("download").hidden = false;
  $("share").href = `/api/jobs/${job.id}?share=${job.share}`;
  $("share").hidden = false;
  $("map-caption").textContent = job.caption;
  say(`${job.method}: done in ${job.seconds} s`);
}

function drawMap() {
  const context = $("map-canvas").getContext("2d");
  context.clearRect(0, 0, state.width, state.height);
  if (!state.map) return;
  const [height, width] = state.map.shape;
  const values = state.map.values;
  let low = Infinity, high = -Infinity;
  for (const v of values) { low = Math.min(low, v); high = Math.max(high, v); }
  const span = high > low ? high - low : 1;
  const out = context.createImageData(width, height);
  const level = (i) => Math.floor(8 * (values[i] - low) / span);
  for (let i = 0; i < values.length; i++) {
    const [r, g, b] = jet((values[i] - low) / span);
    out.data.set([r, g, b, 255], 4 * i);
    const x = i % width;
    if ($("isolines").checked && ((x + 1 < width && level(i) !== level(i + 1))
        || (i + width < values.length && level(i) !== level(i + width)))) {
      out.data.set([0, 0, 0, 255], 4 * i);
    }
  }
  context.putImageData(out, 0, 0);
  $("map-canvas").style.opacity = $("opacity").value;
  $("map-min").textContent = low.toPrecision(3);
  $("map-max").textContent = high.toPrecision(3);
}

function clearMap() {
  state.map = null;
  window.onnxplainShown = null;
  $("map-canvas").getContext("2d").clearRect(0, 0, state.width, state.height);
  $("pin").disabled = true;
  $("download").hidden = true;
  $("share").hidden = true;
  $("progress").value = 0;
}

function pin() {
  const canvas = $("pinned-canvas");
  canvas.width = state.width;
  canvas.height = state.height;
  canvas.style.width = $("image-canvas").style.width;
  const context = canvas.getContext("2d");
  context.drawImage($("image-canvas"), 0, 0);
  context.globalAlpha = Number($("opacity").value);
  context.drawImage($("map-canvas"), 0, 0);
  context.globalAlpha = 1;
  context.drawImage($("outline-canvas"), 0, 0);
  $("pinned-caption").textContent = `${state.job.method} (${JSON.stringify(requestBody().parameters)})`;
  $("pinned").hidden = false;
}

async function upload(input, path, after) {
  const file = input.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  try {
    const saved = await (await api(path, { method: "POST", body: form })).json();
    await after(saved);
    say(`uploaded ${saved.name}`);
  } catch (error) {
    say(error.message, true);
  }
  input.value = "";
}

async function decoded(base64) {
  const picture = new Image();
  picture.src = `data:image/png;base64,${base64}`;
  await picture.decode();
  return picture;
}

async function reopen(saved) {
  // A saved result is shown over its own image and segment, whatever is chosen above.
  const shown = await (await api(`/api/jobs/${saved.id}/picture`)).json();
  state.width = shown.width;
  state.height = shown.height;
  sizeCanvases();
  $("image-canvas").getContext("2d").drawImage(await decoded(shown.image), 0, 0);
  const scratch = document.createElement("canvas");
  scratch.width = shown.width;
  scratch.height = shown.height;
  scratch.getContext("2d").drawImage(await decoded(shown.mask), 0, 0);
  state.segment = scratch.getContext("2d").getImageData(0, 0, shown.width, shown.height);
  drawOutline();
  clearTarget();
  state.job = saved;
  await showMap(saved);
}

async function start() {
  await loadLists();
  await loadModelInfo();
  await loadMethods();
  listenToTarget();
  $("model").addEventListener("change", async () => { await loadModelInfo(); await showSegment(); });
  $("output").addEventListener("change", showSegment);
  $("class-index").addEventListener("change", showSegment);
  $("image").addEventListener("change", showImage);
  $("method").addEventListener("change", showParameters);
  for (const radio of document.querySelectorAll("input[name=target]")) radio.addEventListener("change", drawTarget);
  $("clear-target").addEventListener("click", clearTarget);
  $("run").addEventListener("click", run);
  $("cancel").addEventListener("click", () => state.job && api(`/api/jobs/${state.job.id}`, { method: "DELETE" }));
  $("opacity").addEventListener("input", () => { $("map-canvas").style.opacity = $("opacity").value; });
  $("isolines").addEventListener("change", drawMap);
  $("outline").addEventListener("change", drawOutline);
  $("pin").addEventListener("click", pin);
  $("model-file").addEventListener("change", () => upload($("model-file"), "/api/models",
    async (saved) => { await loadLists(saved.id, $("image").value); await loadModelInfo(); await showSegment(); }));
  $("result-file").addEventListener("change", () => upload($("result-file"), "/api/results", reopen));
  $("image-file").addEventListener("change", () => upload($("image-file"), "/api/images",
    async (saved) => { await loadLists($("model").value, saved.id); await showImage(); }));
  await showImage();
  document.body.dataset.ready = "true";
}

start().catch((error) => say(error.message, true));
