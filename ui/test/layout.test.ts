import { describe, expect, it } from "vitest";
import ELK from "elkjs/lib/elk.bundled.js";
import { elkGraph, layout, FANOUT_HEIGHT, NODE_HEIGHT, ON_FAILURE, type ElkLike } from "../src/layout";
import type { PipelineDoc } from "../src/types";

const diamond: PipelineDoc = {
  metadata: { name: "diamond" },
  on_failure: "alert",
  nodes: [
    { id: "fetch", function: "http" },
    { id: "left", function: "transform" },
    { id: "right", function: "transform", foreach: "{{ fetch.output.items }}" },
    { id: "join", function: "merge" },
  ],
  edges: [
    { from: "fetch", to: "left" },
    { from: "fetch", to: "right", when: "size(fetch.output.items) > 0" },
    { from: "left", to: "join" },
    { from: "right", to: "join" },
    { from: "ghost", to: "join" },
  ],
};

describe("elkGraph", () => {
  it("has a box per node, a taller one per fan-out node, the failure handler, and the edges whose ends exist", () => {
    const g = elkGraph(diamond);
    expect(g.layoutOptions["elk.algorithm"]).toBe("layered");
    expect(g.children.map((c) => c.id)).toEqual(["fetch", "left", "right", "join", ON_FAILURE]);
    expect(g.children.find((c) => c.id === "right")?.height).toBe(FANOUT_HEIGHT);
    expect(g.children.find((c) => c.id === "left")?.height).toBe(NODE_HEIGHT);
    expect(g.edges.map((e) => [e.sources[0], e.targets[0]])).toEqual([
      ["fetch", "left"],
      ["fetch", "right"],
      ["left", "join"],
      ["right", "join"],
    ]);
  });
});

describe("layout with elkjs", () => {
  it("places every node, left to right by depth, without overlaps", async () => {
    const laid = await layout(diamond, new ELK() as unknown as ElkLike);
    expect(laid.nodes.map((n) => n.id).sort()).toEqual(["fetch", "join", "left", "on-failure", "right"]);
    const at = Object.fromEntries(laid.nodes.map((n) => [n.id, n]));
    expect(at.fetch.x).toBeLessThan(at.left.x);
    expect(at.left.x).toBeLessThan(at.join.x);
    expect(at.left.x).toBe(at.right.x);
    expect(at.left.y).not.toBe(at.right.y);
    for (const a of laid.nodes)
      for (const b of laid.nodes)
        if (a.id < b.id) {
          const apart = a.x + a.width <= b.x || b.x + b.width <= a.x || a.y + a.height <= b.y || b.y + b.height <= a.y;
          expect(apart, `${a.id} and ${b.id} overlap`).toBe(true);
        }
    expect(laid.edges.find((e) => e.target === "right")?.label).toBe("size(fetch.output.items) > 0");
    expect(laid.width).toBeGreaterThan(0);
  });

  it("lays out a 200-node chain with every node placed", async () => {
    const nodes = Array.from({ length: 200 }, (_, i) => ({ id: `n${i}`, function: "log" }));
    const edges = nodes.slice(1).map((n, i) => ({ from: `n${i}`, to: n.id }));
    const laid = await layout({ metadata: { name: "chain" }, nodes, edges }, new ELK() as unknown as ElkLike);
    expect(new Set(laid.nodes.map((n) => n.x)).size).toBe(200);
  });
});
