// The pipeline-aware edits the editor makes on the YAML text (yamledit.ts does the splicing), and the
// pipeline read back from the text for the canvas.

import { data, edit, type Path } from "./yamledit";
import type { PipelineDoc, PipelineEdge, PipelineNode } from "../types";

export type DraftNode = Omit<PipelineNode, "function"> & {
  function?: string;
  type?: string;
  runOn?: string;
  retry?: Record<string, unknown>;
  timeout_s?: number;
  scaling?: Record<string, unknown>;
};

export interface Draft {
  apiVersion?: string;
  metadata?: { name?: string; description?: string };
  trigger?: Record<string, unknown>;
  variables?: Record<string, unknown>;
  nodes?: DraftNode[];
  edges?: PipelineEdge[];
  [key: string]: unknown;
}

export function newPipeline(name = "my-pipeline"): string {
  return `apiVersion: flume/v1\nkind: Pipeline\nmetadata:\n  name: ${name}\n\ntrigger:\n  type: webhook\n`;
}

/** The text the editor starts from: the pipeline's own, or a new one's when there is none. */
export function draftText(text: string): string {
  return text.trim() ? text : newPipeline();
}

/** What saving writes: the text as it is (the editor never reformats it). */
export function saveText(text: string): string {
  return text;
}

export function read(text: string): Draft | null {
  const d = data(text);
  return d && typeof d === "object" && !Array.isArray(d) ? (d as Draft) : null;
}

export function nodesOf(d: Draft | null): DraftNode[] {
  return Array.isArray(d?.nodes) ? d.nodes.filter((n) => n && typeof n === "object") : [];
}

export function edgesOf(d: Draft | null): PipelineEdge[] {
  return Array.isArray(d?.edges) ? d.edges.filter((e) => e && typeof e === "object") : [];
}

export function functionOf(node: { function?: string; type?: string }): string {
  return node.function ?? node.type ?? "?";
}

/** The draft as the canvas lays it out (the run view's shape). */
export function asPipeline(d: Draft | null): PipelineDoc {
  return {
    metadata: { name: d?.metadata?.name ?? "" },
    nodes: nodesOf(d).map((n) => ({ ...n, id: String(n.id ?? ""), function: functionOf(n) })),
    edges: edgesOf(d).map((e) => ({ ...e, from: String(e.from), to: String(e.to) })),
  };
}

function nodeIndex(text: string, id: string): number {
  const i = nodesOf(read(text)).findIndex((n) => n.id === id);
  if (i < 0) throw new Error(`no node '${id}' in the draft`);
  return i;
}

export function freeId(text: string, base: string): string {
  const ids = new Set(nodesOf(read(text)).map((n) => n.id));
  if (!ids.has(base)) return base;
  let i = 2;
  while (ids.has(`${base}-${i}`)) i += 1;
  return `${base}-${i}`;
}

export function addNode(text: string, id: string, fn: string): string {
  return edit(text, ["nodes"], { id, type: fn }, true);
}

export function removeNode(text: string, id: string): string {
  let out = text;
  const edges = edgesOf(read(out));
  for (let i = edges.length - 1; i >= 0; i -= 1) {
    if (edges[i].from === id || edges[i].to === id) out = edit(out, ["edges", i], undefined);
  }
  if (edgesOf(read(out)).length === 0 && read(out)?.edges !== undefined) out = edit(out, ["edges"], undefined);
  out = edit(out, ["nodes", nodeIndex(out, id)], undefined);
  return out;
}

/** A node's id changed, and every edge that names it. */
export function renameNode(text: string, from: string, to: string): string {
  if (from === to) return text;
  let out = edit(text, ["nodes", nodeIndex(text, from), "id"], to);
  edgesOf(read(out)).forEach((e, i) => {
    if (e.from === from) out = edit(out, ["edges", i, "from"], to);
    if (e.to === from) out = edit(out, ["edges", i, "to"], to);
  });
  return out;
}

export function addEdge(text: string, from: string, to: string): string {
  if (edgesOf(read(text)).some((e) => e.from === from && e.to === to)) return text;
  return edit(text, ["edges"], { from, to }, true);
}

export function removeEdge(text: string, index: number): string {
  return edit(text, ["edges", index], undefined);
}

/** Set (or, with "" / undefined, delete) one field of a node: `path` inside the node, such as ["retry", "retries"]. */
export function setNodeField(text: string, id: string, path: Path, value: unknown): string {
  return edit(text, ["nodes", nodeIndex(text, id), ...path], value === "" ? undefined : value);
}

export function setEdgeField(text: string, index: number, key: "when" | "branch", value: string): string {
  return edit(text, ["edges", index, key], value === "" ? undefined : value);
}

export function setField(text: string, path: Path, value: unknown): string {
  return edit(text, path, value === "" ? undefined : value);
}

/** The nodes upstream of `id` (its ancestors along the edges), nearest first. */
export function upstream(d: Draft | null, id: string): string[] {
  const edges = edgesOf(d);
  const seen: string[] = [];
  const todo = [id];
  while (todo.length) {
    const cur = todo.shift() as string;
    for (const e of edges) {
      if (e.to === cur && !seen.includes(e.from) && e.from !== id) {
        seen.push(e.from);
        todo.push(e.from);
      }
    }
  }
  return seen;
}
