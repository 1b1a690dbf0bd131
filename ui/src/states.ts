// How a state looks: one tone per node and run status (the CSS variables --st-* in styles.css, light and
// dark), and the progress of a fan-out node's items.

import type { ItemRecord, NodeRecord } from "./types";

export const STATUSES = ["pending", "scheduled", "running", "succeeded", "failed", "skipped", "cancelled"] as const;
export const RUN_FINAL = new Set(["succeeded", "failed", "cancelled"]);
export const NODE_FINAL = new Set(["succeeded", "failed", "skipped", "cancelled"]);

const LABELS: Record<string, string> = {
  pending: "pending",
  scheduled: "running", // its invoke is out: queued at the function or running there (the router cannot tell)
  running: "running",
  succeeded: "succeeded",
  failed: "failed",
  skipped: "skipped",
  cancelled: "cancelled",
};

const ICONS: Record<string, string> = {
  pending: "○",
  scheduled: "◐",
  running: "◐",
  succeeded: "✓",
  failed: "✗",
  skipped: "–",
  cancelled: "⊘",
};

export interface Tone {
  status: string;
  label: string;
  icon: string;
  color: string; // a CSS colour: var(--st-STATUS)
  className: string; // st-STATUS
}

export function tone(status: string): Tone {
  const known = status in LABELS ? status : "pending";
  return {
    status: known,
    label: LABELS[known],
    icon: ICONS[known],
    color: `var(--st-${known === "scheduled" ? "running" : known})`,
    className: `st-${known === "scheduled" ? "running" : known}`,
  };
}

export interface Progress {
  total: number;
  done: number; // succeeded
  failed: number;
  running: number; // scheduled or running
  pending: number;
  other: number; // skipped or cancelled
}

export function progress(items: ItemRecord[] | undefined): Progress {
  const p: Progress = { total: 0, done: 0, failed: 0, running: 0, pending: 0, other: 0 };
  for (const item of items ?? []) {
    p.total += 1;
    if (item.status === "succeeded") p.done += 1;
    else if (item.status === "failed") p.failed += 1;
    else if (item.status === "running" || item.status === "scheduled") p.running += 1;
    else if (item.status === "pending") p.pending += 1;
    else p.other += 1;
  }
  return p;
}

/** "12 done · 1 failed · 5 running of 500" */
export function progressText(p: Progress): string {
  const parts = [`${p.done} done`];
  if (p.failed) parts.push(`${p.failed} failed`);
  if (p.running) parts.push(`${p.running} running`);
  return `${parts.join(" · ")} of ${p.total}`;
}

export function isFanout(node: NodeRecord | undefined): boolean {
  return Array.isArray(node?.items) || node?.progress !== undefined;
}

/** A fan-out node's progress: from its counters (the run stream's record), else from its items. */
export function progressOf(node: NodeRecord): Progress {
  const c = node.progress;
  return c ? { total: c.total, done: c.done, failed: c.failed, running: c.running, pending: c.pending, other: 0 } : progress(node.items);
}

/** The share of each part of a fan-out's items, for the bar under the node (fractions 0..1). */
export function progressBar(p: Progress): { status: string; share: number }[] {
  if (p.total === 0) return [];
  return [
    { status: "succeeded", share: p.done / p.total },
    { status: "failed", share: p.failed / p.total },
    { status: "running", share: p.running / p.total },
    { status: "cancelled", share: p.other / p.total },
  ].filter((part) => part.share > 0);
}
