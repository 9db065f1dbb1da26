// Turning API values into words: times, counts, names. Pure functions, no DOM.

export function orDash(value) {
  return value === undefined || value === null || value === '' ? '—' : String(value);
}

export function toMillis(value) {
  if (value === undefined || value === null || value === '') return NaN;
  if (typeof value === 'number') return value < 1e12 ? value * 1000 : value; // epoch seconds or ms
  if (/^\d+(\.\d+)?$/.test(String(value))) return toMillis(Number(value));
  return Date.parse(value);
}

/** "just now", "3 min ago", "2 h ago", "4 d ago", or a date. */
export function relativeTime(value, now = Date.now()) {
  const t = toMillis(value);
  if (Number.isNaN(t)) return 'never';
  const s = Math.max(0, (now - t) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  if (s < 86400 * 14) return `${Math.floor(s / 86400)} d ago`;
  return new Date(t).toLocaleDateString();
}

export function timeUntil(value, now = Date.now()) {
  const t = toMillis(value);
  if (Number.isNaN(t)) return '';
  const s = (t - now) / 1000;
  if (s <= 0) return 'expired';
  // Rounded, not truncated: a token that has just been issued for 24 hours "expires in 24 h".
  if (s < 90 * 60) return `expires in ${Math.max(1, Math.round(s / 60))} min`;
  return `expires in ${Math.round(s / 3600)} h`;
}

export function absoluteTime(value) {
  const t = toMillis(value);
  return Number.isNaN(t) ? '' : new Date(t).toLocaleString();
}

export function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function displayName(device) {
  return (device && (device.name || device.id)) || 'this device';
}
