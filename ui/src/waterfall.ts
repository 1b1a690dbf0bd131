// The waterfall of a run: one bar per node from when it was queued (its invoke published) through when the
// function started it to when it finished, in milliseconds from the run's start.

import type { NodeRecord, RunRecord } from "./types";

export interface Bar {
  node: string;
  status: string;
  queuedMs: number | null; // from the run's start
  startMs: number | null;
  endMs: number | null; // null while it runs
  queueMs: number | null; // time between queued and started (a cold start on Knative)
  runMs: number | null;
}

function at(iso: string | null | undefined, origin: number): number | null {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t - origin : null;
}

export function queuedAt(node: NodeRecord): string | undefined {
  return node.queued_at;
}

export function bars(run: RunRecord, order: string[]): Bar[] {
  const origin = Date.parse(run.created_at);
  const out: Bar[] = [];
  for (const id of order) {
    const node = run.nodes[id];
    if (!node) continue;
    const queued = at(queuedAt(node), origin);
    const start = at(node.started_at, origin);
    const end = at(node.finished_at, origin);
    if (queued === null && start === null && end === null) continue;
    const queueMs = node.queue_ms ?? (queued !== null && start !== null ? Math.max(0, start - queued) : null);
    const runMs = node.duration_ms ?? (start !== null && end !== null ? Math.max(0, end - start) : null);
    out.push({ node: id, status: node.status, queuedMs: queued, startMs: start, endMs: end, queueMs, runMs });
  }
  return out;
}

/** The time the waterfall spans: to the run's end, or to `now` while it runs (at least 1 ms). */
export function span(run: RunRecord, list: Bar[], now: number = Date.now()): number {
  const origin = Date.parse(run.created_at);
  const end = run.finished_at ? Date.parse(run.finished_at) - origin : now - origin;
  const furthest = Math.max(0, ...list.map((b) => b.endMs ?? b.startMs ?? b.queuedMs ?? 0));
  return Math.max(1, end, furthest);
}
