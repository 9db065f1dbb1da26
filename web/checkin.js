// When a claimed device has not checked in yet: when it will, from the agent's poll schedule, and that
// a replug makes it check in at once (a reboot restarts polling). The page does not know when the
// device was powered on, so it gives both cases: switched on within the fast window (a check-in within
// its fast wait) or waiting longer (at the latest one cap after the claim). Pure, no DOM.
import { toMillis } from './format.js';

// firmware/schedule.py's defaults (tests/unit/web/test_checkin.py keeps them equal).
export const SCHEDULE = { fastWait: 30, fastWindow: 600, growth: 0.15, cap: 3900, jitter: 0.2 };
export const QUIET_S = 30; // say nothing for the first 30 s after the claim: most devices are back by then

/** The longest the device can still take after the claim, in seconds, if powered on `ageS` s before it. */
export function longestWait(ageS, schedule = SCHEDULE) {
  const { fastWait, fastWindow, growth, cap, jitter } = schedule;
  const base = ageS < fastWindow ? fastWait : Math.min(cap, Math.max(fastWait, growth * ageS));
  return Math.min(cap, base * (1 + jitter));
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** The hint for a claimed device quiet for QUIET_S or more since its claim, else ''. */
export function checkInHint(device, now = Date.now(), schedule = SCHEDULE) {
  if (!device || device.state !== 'claimed') return '';
  const claimed = toMillis(device.claimedAt);
  if (Number.isNaN(claimed) || now - claimed < QUIET_S * 1000) return '';
  const fast = Math.round(longestWait(0, schedule));
  const latest = claimed + longestWait(Infinity, schedule) * 1000;
  const replug = 'Unplugging it and plugging it back in makes it check in at once.';
  if (now > latest) {
    return `Not checked in yet: it should have by ${clock(latest)}. Check that it has power and a network. ${replug}`;
  }
  return (
    `Not checked in yet. A device switched on less than ${schedule.fastWindow / 60} minutes before the claim ` +
    `checks in within ${fast} s; one waiting longer checks in by ${clock(latest)} at the latest. ${replug}`
  );
}
