import { describe, expect, it } from "vitest";
import { readdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { data, edit, flowText } from "../src/editor/yamledit";
import { addEdge, addNode, draftText, renameNode, removeNode, saveText } from "../src/editor/model";

const EXAMPLES = resolve(import.meta.dirname, "../../examples");
const files = readdirSync(EXAMPLES).filter((f) => f.endsWith(".yaml"));

function changed(a: string, b: string): [string[], string[]] {
  const x = a.split("\n");
  const y = b.split("\n");
  return [x.filter((l) => !y.includes(l)), y.filter((l) => !x.includes(l))];
}

describe("the YAML round trip", () => {
  it("finds the examples", () => expect(files.length).toBeGreaterThanOrEqual(5));
  for (const file of files) {
    const text = readFileSync(resolve(EXAMPLES, file), "utf8");
    it(`${file}: load then save with no change gives the same text`, () => {
      expect(saveText(draftText(text))).toBe(text);
      let same = text;
      const nodes = (data(text) as { nodes: Record<string, unknown>[] }).nodes;
      nodes.forEach((node, i) => Object.entries(node).forEach(([key, value]) => (same = edit(same, ["nodes", i, key], value))));
      expect(same).toBe(text); // every field set to what it is: not a byte moves
    });
    it(`${file}: a node and an edge added keep every line there was, in order`, () => {
      const first = (data(text) as { nodes: { id: string }[] }).nodes[0].id;
      const after = addEdge(addNode(text, "added", "log"), first, "added");
      expect((data(after) as { nodes: { id: string }[] }).nodes.map((n) => n.id)).toContain("added");
      const lines = after.split("\n");
      let at = 0;
      for (const line of text.split("\n")) {
        at = lines.indexOf(line, at);
        expect(at, `line ${JSON.stringify(line)} was lost`).toBeGreaterThanOrEqual(0);
        at += 1;
      }
    });
    it(`${file}: a retry set on the first node changes only its lines`, () => {
      const after = edit(text, ["nodes", 0, "retry", "retries"], 7);
      expect((data(after) as { nodes: { retry: { retries: number } }[] }).nodes[0].retry.retries).toBe(7);
      const [gone, added] = changed(text, after);
      expect(gone.length).toBeLessThanOrEqual(1);
      expect(added.filter((l) => !l.includes("retr")).length).toBe(0);
    });
  }
});

const SMALL = `# a comment at the top
metadata:
  name: small   # the name
nodes:
  - id: a
    type: log
    retry: {retries: 3, backoff: linear}

  - id: b
    type: log   # b's comment
edges:
  - {from: a, to: b}
`;

describe("edits splice the text", () => {
  it("changes a scalar in place, keeping the comment", () => {
    expect(edit(SMALL, ["metadata", "name"], "other")).toBe(SMALL.replace("name: small", "name: other"));
  });
  it("keeps a flow map flow", () => {
    const after = edit(SMALL, ["nodes", 0, "retry", "retries"], 5);
    expect(after).toBe(SMALL.replace("{retries: 3, backoff: linear}", "{retries: 5, backoff: linear}"));
  });
  it("adds a key to a flow edge on its own line", () => {
    const after = edit(SMALL, ["edges", 0, "when"], "a.output > 1");
    expect(after).toBe(SMALL.replace("{from: a, to: b}", '{from: a, to: b, when: "a.output > 1"}'));
  });
  it("adds a key to a block map after its last one", () => {
    const after = edit(SMALL, ["nodes", 1, "timeout_s"], 30);
    expect(after).toBe(SMALL.replace("    type: log   # b's comment\n", "    type: log   # b's comment\n    timeout_s: 30\n"));
  });
  it("deletes a key and the map it empties", () => {
    const one = edit(SMALL, ["nodes", 0, "retry"], { retries: 3 });
    expect(edit(one, ["nodes", 0, "retry", "retries"], undefined)).toBe(SMALL.replace("    retry: {retries: 3, backoff: linear}\n", ""));
  });
  it("writes multi-line text as a block", () => {
    const after = edit(SMALL, ["nodes", 1, "inputs"], { prompt: "line one\nline two\n" });
    expect(after).toContain("    inputs:\n      prompt: |\n        line one\n        line two\n");
  });
  it("builds a pipeline from nothing", () => {
    let text = draftText("");
    text = addNode(text, "fetch", "http-request");
    text = addNode(text, "save", "mongodb-insert");
    text = addEdge(text, "fetch", "save");
    text = renameNode(text, "fetch", "fetch-topic");
    expect(data(text)).toMatchObject({ nodes: [{ id: "fetch-topic", type: "http-request" }, { id: "save" }], edges: [{ from: "fetch-topic", to: "save" }] });
    text = removeNode(text, "save");
    expect(data(text)).toMatchObject({ nodes: [{ id: "fetch-topic" }] });
    expect((data(text) as { edges?: unknown }).edges).toBeUndefined();
  });
  it("adds an edge among flow edges as one more flow edge", () => {
    const after = addEdge(SMALL, "b", "a");
    expect(after).toBe(SMALL + "  - {from: b, to: a}\n");
  });
  it("writes flow text as people do", () => {
    expect(flowText({ from: "a", to: "b", when: "x > 1" })).toBe('{from: a, to: b, when: "x > 1"}');
  });
});
