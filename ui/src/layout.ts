// The DAG laid out by elkjs' layered algorithm (left to right): the graph elk gets is built from the pipeline
// (its nodes, edges and failure handler), and every node comes back with a position.

import type { PipelineDoc } from "./types";

export const NODE_WIDTH = 210;
export const NODE_HEIGHT = 62;
export const FANOUT_HEIGHT = 84;
export const ON_FAILURE = "on-failure"; // router/pipeline.py ON_FAILURE_NODE

export interface ElkNode {
  id: string;
  width: number;
  height: number;
  x?: number;
  y?: number;
}

export interface ElkEdge {
  id: string;
  sources: string[];
  targets: string[];
}

export interface ElkGraph {
  id: string;
  layoutOptions: Record<string, string>;
  children: ElkNode[];
  edges: ElkEdge[];
}

export interface Laid {
  id: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface LaidEdge {
  id: string;
  source: string;
  target: string;
  label?: string;
}

export interface Layout {
  nodes: Laid[];
  edges: LaidEdge[];
  width: number;
  height: number;
}

export const LAYOUT_OPTIONS: Record<string, string> = {
  "elk.algorithm": "layered",
  "elk.direction": "RIGHT",
  "elk.layered.spacing.nodeNodeBetweenLayers": "70",
  "elk.spacing.nodeNode": "28",
  "elk.layered.nodePlacement.strategy": "BRANDES_KOEPF",
  "elk.layered.crossingMinimization.strategy": "LAYER_SWEEP",
  "elk.separateConnectedComponents": "true",
};

export function isFanoutNode(node: PipelineDoc["nodes"][number]): boolean {
  return node.foreach !== undefined || node.loop !== undefined || node.replicas !== undefined;
}

export function edgeId(from: string, to: string, index: number): string {
  return `${from}->${to}#${index}`;
}

/** The graph elk lays out: one box per node (taller for fan-out nodes), one edge per pipeline edge whose
 * ends exist, and the failure handler as a box of its own when the pipeline has one. */
export function elkGraph(pipeline: PipelineDoc): ElkGraph {
  const ids = new Set(pipeline.nodes.map((n) => n.id));
  const children: ElkNode[] = pipeline.nodes.map((n) => ({
    id: n.id,
    width: NODE_WIDTH,
    height: isFanoutNode(n) ? FANOUT_HEIGHT : NODE_HEIGHT,
  }));
  if (pipeline.on_failure && !ids.has(ON_FAILURE)) {
    children.push({ id: ON_FAILURE, width: NODE_WIDTH, height: NODE_HEIGHT });
  }
  const edges: ElkEdge[] = (pipeline.edges ?? [])
    .filter((e) => ids.has(e.from) && ids.has(e.to))
    .map((e, i) => ({ id: edgeId(e.from, e.to, i), sources: [e.from], targets: [e.to] }));
  return { id: "root", layoutOptions: LAYOUT_OPTIONS, children, edges };
}

export function edgeLabel(edge: PipelineDoc["edges"][number]): string | undefined {
  if (edge.branch !== undefined && edge.when) return `${edge.branch} · ${edge.when}`;
  return edge.branch ?? edge.when ?? undefined;
}

/** Read elk's answer: every node of the graph with its position (a node elk left unplaced is put at the
 * origin, never dropped), and the edges as React Flow takes them. */
export function readLayout(pipeline: PipelineDoc, laid: { children?: ElkNode[]; width?: number; height?: number }): Layout {
  const graph = elkGraph(pipeline);
  const byId = new Map((laid.children ?? []).map((c) => [c.id, c]));
  const nodes = graph.children.map((c) => {
    const found = byId.get(c.id);
    return { id: c.id, x: found?.x ?? 0, y: found?.y ?? 0, width: c.width, height: c.height };
  });
  const known = (pipeline.edges ?? []).filter((e) => graph.children.some((c) => c.id === e.from) && graph.children.some((c) => c.id === e.to));
  const edges = known.map((e, i) => ({ id: edgeId(e.from, e.to, i), source: e.from, target: e.to, label: edgeLabel(e) }));
  return { nodes, edges, width: laid.width ?? 0, height: laid.height ?? 0 };
}

export interface ElkLike {
  layout(graph: ElkGraph): Promise<{ children?: ElkNode[]; width?: number; height?: number }>;
}

let shared: Promise<ElkLike> | null = null;

/** elkjs, loaded on first use (it is the largest part of the dashboard: only pages with a DAG need it). */
export function loadElk(): Promise<ElkLike> {
  shared ??= import("elkjs/lib/elk.bundled.js").then((m) => new m.default() as unknown as ElkLike);
  return shared;
}

export async function layout(pipeline: PipelineDoc, elk?: ElkLike): Promise<Layout> {
  const engine = elk ?? (await loadElk());
  return readLayout(pipeline, await engine.layout(elkGraph(pipeline)));
}
