// The validator's answer (POST /pipelines/validate) sorted by what each problem names: a node, an edge
// (by its index in `edges`), or the pipeline as a whole.

export interface EditorProblem {
  message: string;
  text: string;
  line?: number | null;
  node?: string | null;
  field?: string | null;
  edge?: { index: number; from?: string; to?: string };
}

export interface Validation {
  valid: boolean;
  pipeline?: string | null;
  problems: EditorProblem[];
}

export interface Placed {
  byNode: Map<string, EditorProblem[]>;
  byEdge: Map<number, EditorProblem[]>;
  other: EditorProblem[];
}

export function place(problems: EditorProblem[], nodeIds: string[]): Placed {
  const byNode = new Map<string, EditorProblem[]>();
  const byEdge = new Map<number, EditorProblem[]>();
  const other: EditorProblem[] = [];
  const ids = new Set(nodeIds);
  for (const p of problems) {
    if (p.edge && typeof p.edge.index === "number") byEdge.set(p.edge.index, [...(byEdge.get(p.edge.index) ?? []), p]);
    else if (p.node && ids.has(p.node)) byNode.set(p.node, [...(byNode.get(p.node) ?? []), p]);
    else other.push(p);
  }
  return { byNode, byEdge, other };
}
