// Small line charts drawn as inline SVG (no chart library): a series of [time ms, value] points.

const NS = 'http://www.w3.org/2000/svg';
const W = 600, H = 140, PAD_L = 34, PAD_R = 8, PAD_T = 8, PAD_B = 18;

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function niceMax(v) {
  if (v <= 4) return 4;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return v;
}

/**
 * Draws `points` ([t, v], t ascending) into `svg` over the last `spanMs`, y from 0 to `yMax` (or a
 * rounded maximum of the data when yMax is null). `cls` styles the line.
 */
export function drawLine(svg, points, { spanMs, yMax, cls, unit }) {
  while (svg.firstChild) svg.firstChild.remove();
  const now = points.length ? points[points.length - 1][0] : Date.now();
  const from = now - spanMs;
  const shown = points.filter(([t, v]) => t >= from && v !== null && v !== undefined);
  const top = yMax !== null ? yMax : niceMax(Math.max(0, ...shown.map(([, v]) => v)));
  const x = (t) => PAD_L + ((t - from) / spanMs) * (W - PAD_L - PAD_R);
  const y = (v) => PAD_T + (1 - Math.min(v, top) / top) * (H - PAD_T - PAD_B);
  for (const f of [0, 0.5, 1]) {
    const v = top * f;
    svg.append(el('line', { class: 'grid', x1: PAD_L, x2: W - PAD_R, y1: y(v), y2: y(v) }));
    svg.append(el('text', { class: 'axis', x: PAD_L - 4, y: y(v) + 3, 'text-anchor': 'end' },
      (Number.isInteger(v) ? v : v.toFixed(1)) + (unit || '')));
  }
  for (const [label, t] of [['-' + Math.round(spanMs / 60000) + ' min', from], ['now', now]]) {
    svg.append(el('text', { class: 'axis', x: x(t), y: H - 4, 'text-anchor': t === now ? 'end' : 'start' }, label));
  }
  if (shown.length < 2) return;
  const line = shown.map(([t, v]) => x(t).toFixed(1) + ',' + y(v).toFixed(1)).join(' ');
  const area = x(shown[0][0]).toFixed(1) + ',' + y(0) + ' ' + line + ' ' + x(shown[shown.length - 1][0]).toFixed(1) + ',' + y(0);
  svg.append(el('polygon', { class: 'area ' + (cls || ''), points: area }));
  svg.append(el('polyline', { class: 'line ' + (cls || ''), points: line }));
}
