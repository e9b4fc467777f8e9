// cnnumpy serve: the page's script. Plain JavaScript and the canvas API; it talks only to
// the server that sent it (GET /api/model, POST /api/predict, POST /api/explain).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { blob: null, seq: 0, timer: 0, strokeEnd: 0, selected: null };
window.cnnTimings = [];  // per update: {request_ms, render_ms, total_ms, since_stroke_ms}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// ---- the model summary and the first layer's kernels (once) ----
async function loadModel() {
  const info = await (await fetch("/api/model")).json();
  $("model-name").textContent = `${info.name}: input ${info.input_shape.join(" x ")}, ` +
    `${info.class_names.length} classes, ${info.total_params.toLocaleString()} parameters`;
  $("summary").textContent = info.summary;
  const box = $("kernels");
  if (info.first_kernels) {
    const head = el("div", "layer-head", `${info.first_kernels.layer}: ` +
      `${info.first_kernels.shape.join(" x ")} (mean over input channels)`);
    head.append(scale(info.first_kernels));
    const row = el("div", "tiles");
    row.append(...tiles(info.first_kernels, "kernel"));
    box.replaceChildren(head, row);
  } else {
    box.replaceChildren(el("p", "hint", "The model has no convolution."));
  }
}

// ---- predictions ----
async function predict(blob, fromStroke) {
  state.blob = blob;
  const seq = ++state.seq;
  const t0 = performance.now();
  let result;
  try {
    const answer = await fetch("/api/predict", {
      method: "POST", body: blob,
      headers: { "Content-Type": blob.type || "application/octet-stream" },
    });
    result = await answer.json();
    if (!answer.ok) throw new Error(result.error || answer.statusText);
  } catch (err) {
    if (seq === state.seq) status(String(err.message || err), true);
    return;
  }
  if (seq !== state.seq) return;  // a newer image was sent meanwhile
  const t1 = performance.now();
  render(result);
  const t2 = performance.now();
  const timing = { request_ms: t1 - t0, render_ms: t2 - t1, total_ms: t2 - t0,
    since_stroke_ms: fromStroke ? t2 - state.strokeEnd : null };
  window.cnnTimings.push(timing);
  const best = result.top[0];
  status(`${best.label} (${(100 * best.probability).toFixed(1)}%), updated in ` +
    `${Math.round(timing.total_ms)} ms (server ${Math.round(timing.request_ms)} ms, drawing ` +
    `${Math.round(timing.render_ms)} ms)`);
}

function render(result) {
  const top = $("top");
  top.replaceChildren(...result.top.map((t, i) => {
    const row = el("div", "bar-row" + (i === 0 ? " first" : ""));
    const track = el("div", "bar-track");
    const bar = el("div", "bar");
    bar.style.width = (100 * t.probability).toFixed(1) + "%";
    track.append(bar);
    row.append(el("span", "label", t.label), track,
      el("span", "p", (100 * t.probability).toFixed(1) + "%"));
    return row;
  }));
  const seen = tiles(result.input)[0];
  seen.id = "seen";
  seen.className = "tile big";
  seen.setAttribute("role", "img");
  seen.setAttribute("aria-label", `the image as the model sees it, ${result.input.shape[0]} x ` +
    `${result.input.shape[1]} pixels`);
  $("seen").replaceWith(seen);
  const maps = $("maps");
  maps.replaceChildren(...result.layers.map((layer) => {
    const box = el("div", "layer" + (layer.explainable ? " maps" : ""));
    box.dataset.layer = layer.index;
    const head = el("div", "layer-head");
    head.append(el("strong", "", `${layer.name} (${layer.type})`),
      el("span", "", layer.shape.join(" x ")), scale(layer));
    const row = el("div", "tiles");
    tiles(layer).forEach((canvas, channel) => {
      canvas.dataset.layer = layer.index;
      canvas.dataset.channel = channel;
      canvas.title = `${layer.name}, channel ${channel}`;
      canvas.setAttribute("role", layer.explainable ? "button" : "img");
      canvas.setAttribute("aria-label", canvas.title + (layer.explainable ?
        ": Enter explains one value, the arrow keys move it" : ""));
      if (layer.explainable) {
        canvas.tabIndex = 0;
        canvas.addEventListener("click", (e) => clickTile(e, canvas, layer));
        canvas.addEventListener("keydown", (e) => tileKey(e, canvas, layer));
      }
      row.append(canvas);
    });
    box.append(head, row);
    return box;
  }));
  const picked = state.selected;  // the explanation follows the new image
  const again = picked && maps.querySelector(
    `canvas[data-layer="${picked.layer}"][data-channel="${picked.channel}"]`);
  if (again) choose(again, picked.row, picked.col);
  status("");
}

// ---- explanations ----
function clickTile(event, canvas, layer) {
  const rect = canvas.getBoundingClientRect();
  const [h, w] = layer.shape;
  const row = Math.min(h - 1, Math.floor((event.clientY - rect.top) / rect.height * h));
  const col = Math.min(w - 1, Math.floor((event.clientX - rect.left) / rect.width * w));
  choose(canvas, row, col);
}

// Keyboard: Enter or Space explains the tile's value at the last position (its centre at
// first); the arrow keys move that position by one and explain it.
const MOVES = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };

function tileKey(event, canvas, layer) {
  const [h, w] = layer.shape;
  const picked = state.selected;
  const mine = picked && picked.layer === layer.index &&
    picked.channel === Number(canvas.dataset.channel);
  let [row, col] = mine ? [picked.row, picked.col] : [h >> 1, w >> 1];
  if (event.key in MOVES && mine) {
    row = Math.max(0, Math.min(h - 1, row + MOVES[event.key][0]));
    col = Math.max(0, Math.min(w - 1, col + MOVES[event.key][1]));
  } else if (!(event.key === "Enter" || event.key === " " || event.key in MOVES)) {
    return;
  }
  event.preventDefault();
  choose(canvas, row, col);
}

function choose(canvas, row, col) {
  const layer = Number(canvas.dataset.layer);
  const channel = Number(canvas.dataset.channel);
  state.selected = { layer, channel, row, col };
  document.querySelectorAll(".tile.selected").forEach((t) => t.classList.remove("selected"));
  canvas.classList.add("selected");
  explain(layer, row, col, channel);
}

async function explain(layer, row, col, channel) {
  if (!state.blob) return;
  const seq = state.seq;
  const url = `/api/explain?layer=${layer}&row=${row}&col=${col}&channel=${channel}`;
  const answer = await fetch(url, {
    method: "POST", body: state.blob,
    headers: { "Content-Type": state.blob.type || "application/octet-stream" },
  });
  const result = await answer.json();
  if (seq !== state.seq) return;  // the image changed meanwhile: its own request follows
  const box = $("explain");
  box.dataset.image = seq;
  if (!answer.ok) {
    box.replaceChildren(el("p", "error", result.error));
    return;
  }
  box.replaceChildren(...(result.kind === "conv" ? explainConv(result) : explainPool(result)));
  box.dataset.value = result.value;
  box.dataset.modelValue = result.model_value;
}

// ---- drawing: pointer events cover mouse, pen and touch ----
function setupPad() {
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const clear = () => {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
  };
  clear();
  let drawing = false;
  const point = (e) => {
    const rect = pad.getBoundingClientRect();
    return [(e.clientX - rect.left) * pad.width / rect.width,
      (e.clientY - rect.top) * pad.height / rect.height];
  };
  pad.addEventListener("pointerdown", (e) => {
    drawing = true;
    pad.setPointerCapture(e.pointerId);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = pad.width / 14;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...point(e));
    ctx.lineTo(...point(e));
    ctx.stroke();
    clearTimeout(state.timer);
  });
  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    ctx.lineTo(...point(e));
    ctx.stroke();
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    state.strokeEnd = performance.now();
    clearTimeout(state.timer);  // debounced: one request once the strokes pause
    state.timer = setTimeout(() => pad.toBlob((blob) => predict(blob, true), "image/png"), 120);
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  $("clear").addEventListener("click", () => {
    clear();
    state.blob = null;
    state.selected = null;
    state.seq++;
    const seen = $("seen");
    seen.getContext("2d").clearRect(0, 0, seen.width, seen.height);
    status("");
    $("top").replaceChildren(el("p", "hint", "Draw something to see the model's answer."));
    $("maps").replaceChildren();
    $("explain").replaceChildren(el("p", "hint", "Click a feature-map tile above."));
  });
}

// ---- a dropped or chosen file: sent as it is, and shown on the pad ----
async function useFile(file) {
  if (!file) return;
  predict(file, false);
  try {
    const bitmap = await createImageBitmap(file);
    const pad = $("pad");
    const ctx = pad.getContext("2d");
    const k = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.drawImage(bitmap, (pad.width - k * bitmap.width) / 2,
      (pad.height - k * bitmap.height) / 2, k * bitmap.width, k * bitmap.height);
  } catch (err) {
    // not an image the browser can show: the server's answer says what was wrong
  }
}

// A file dropped anywhere on the page is used (the browser would otherwise leave the page to
// show it); the drop zone also opens the file picker on a click, Enter or Space.
function setupDrop() {
  const drop = $("drop");
  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  document.addEventListener("dragleave", (e) => {
    if (!e.relatedTarget) drop.classList.remove("over");  // the pointer left the window
  });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    useFile(e.dataTransfer.files[0]);
  });
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" && e.key !== " ") return;
    e.preventDefault();
    $("file").click();
  });
  $("file").addEventListener("change", (e) => useFile(e.target.files[0]));
}

window.addEventListener("DOMContentLoaded", () => {
  setupPad();
  setupDrop();
  loadModel().catch((err) => status("could not load the model: " + err, true));
});
