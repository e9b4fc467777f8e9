// cnnumpy serve: the page's pieces (tiles, colour scales, the explanation's tables), built
// from the server's answers; app.js wires them to the page. Plain JavaScript, no library.
"use strict";

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(v) {
  if (v === null || v === undefined) return "pad";
  const a = Math.abs(v);
  return a !== 0 && (a < 0.01 || a >= 1000) ? v.toExponential(1) : v.toFixed(2);
}

// Bytes of an encoded map set (channel-major, one byte per value) as greyscale canvases.
function decode(enc) {
  const raw = atob(enc.data);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function tile(bytes, offset, h, w, cls) {
  const canvas = el("canvas", "tile" + (cls ? " " + cls : ""));
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const v = bytes[offset + i];
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

function tiles(enc, cls) {
  const [h, w, c] = enc.shape;
  const bytes = decode(enc);
  const out = [];
  for (let k = 0; k < c; k++) out.push(tile(bytes, k * h * w, h, w, cls));
  return out;
}

function scale(enc) {
  const box = el("span", "scale-box");
  const bar = el("canvas", "scale");
  bar.width = 100;
  bar.height = 1;
  const ctx = bar.getContext("2d");
  const grad = ctx.createLinearGradient(0, 0, 100, 0);
  grad.addColorStop(0, "#000");
  grad.addColorStop(1, "#fff");
  ctx.fillStyle = grad;
  ctx.fillRect(0, 0, 100, 1);
  box.append(el("span", "", fmt(enc.min) + " "), bar, el("span", "", " " + fmt(enc.max)));
  return box;
}

function grid(caption, values, inside, winner) {
  const table = el("table", "grid");
  table.append(el("caption", "", caption));
  values.forEach((line, i) => {
    const tr = el("tr");
    line.forEach((v, j) => {
      const td = el("td", "", fmt(v));
      if (inside && !inside[i][j]) td.className = "pad";
      if (winner && winner[0] === i && winner[1] === j) td.className = "win";
      tr.append(td);
    });
    table.append(tr);
  });
  return table;
}

const channelOf = (a, c) => a.map((line) => line.map((v) => v[c]));

function explainConv(r) {
  const where = `${r.layer}: filter ${r.channel} at row ${r.row}, column ${r.col}`;
  const nodes = [el("h3", "", where)];
  const sums = r.channel_sums;
  if (r.type === "DepthwiseConv2D") {
    nodes.push(el("p", "hint", `A depthwise convolution: each output channel reads one ` +
      `input channel with its own kernel; filter ${r.channel} reads input channel ` +
      `${r.input_channels[0]}.`));
  }
  const order = sums.map((s, c) => c).sort((a, b) => Math.abs(sums[b]) - Math.abs(sums[a]));
  const shown = order.slice(0, 3);
  if (sums.length > 1) {
    nodes.push(el("p", "hint", `The window has ${sums.length} input channels; the ` +
      `${shown.length} that add the most are shown (their sums: ` +
      shown.map((c) => `channel ${r.input_channels[0] + c}: ${fmt(sums[c])}`).join(", ") +
      `). Every channel's products are added up.`));
  }
  for (const c of shown) {
    const grids = el("div", "grids");
    const name = sums.length > 1 ? ` (channel ${r.input_channels[0] + c})` : "";
    grids.append(grid("input window" + name, channelOf(r.window, c), r.inside),
      grid("kernel" + name, channelOf(r.kernel, c)),
      grid("window x kernel" + name, channelOf(r.products, c), r.inside));
    nodes.push(grids);
  }
  const act = r.activation === "linear" ? "" : `${r.activation}(${fmt(r.pre_activation)}) = `;
  nodes.push(el("p", "formula", `sum of products ${fmt(r.sum)} + bias ${fmt(r.bias)} = ` +
    `${fmt(r.pre_activation)}; ${act}${fmt(r.value)}`));
  nodes.push(el("p", "hint result", `The model computed ${fmt(r.model_value)} here.`));
  return nodes;
}

function explainPool(r) {
  const where = `${r.layer}: channel ${r.channel} at row ${r.row}, column ${r.col}`;
  const how = r.kind === "max_pool" ? `the largest value in the window wins: ${fmt(r.value)}`
    : `the mean of the ${r.count} values in the window: ${fmt(r.value)}`;
  return [el("h3", "", where),
    grid("input window", r.window, r.inside, r.kind === "max_pool" ? r.winner : null),
    el("p", "formula", how),
    el("p", "hint result", `The model computed ${fmt(r.model_value)} here.`)];
}
