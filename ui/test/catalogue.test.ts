import { describe, expect, it } from "vitest";
import { complete, completions, fields, groups, kindOf, typing, valueFor, type FunctionInfo } from "../src/editor/catalogue";
import { place } from "../src/editor/problems";

const fn = (name: string, category: string, output: Record<string, object> = {}): FunctionInfo => ({
  name,
  category,
  description: `${name} does it`,
  builtin: true,
  traits: {},
  input_schema: {},
  output_schema: { properties: output },
});

describe("the palette", () => {
  it("groups by the README's categories, custom last, and filters", () => {
    const all = [fn("mine", "custom"), fn("log", "utility"), fn("http-request", "HTTP"), fn("llm-generate", "AI")];
    expect(groups(all).map(([c]) => c)).toEqual(["HTTP", "AI", "utility", "custom"]);
    expect(groups(all, "llm").map(([, f]) => f.map((x) => x.name))).toEqual([["llm-generate"]]);
  });
});

describe("a form's fields from JSON Schema", () => {
  const schema = {
    required: ["url"],
    properties: {
      url: { type: "string" },
      method: { enum: ["GET", "POST"] },
      maxTokens: { anyOf: [{ type: "integer" }, { type: "null" }] },
      json: {},
      apiKey: { anyOf: [{ type: "string", format: "password" }, { type: "null" }] },
    },
  };
  it("reads kinds through nullable anyOf", () => {
    expect(fields(schema).map((f) => [f.name, f.kind, f.required])).toEqual([
      ["url", "text", true],
      ["method", "enum", false],
      ["maxTokens", "integer", false],
      ["json", "yaml", false],
      ["apiKey", "text", false],
    ]);
    expect(kindOf(schema.properties.apiKey).secret).toBe(true);
  });
  it("keeps a template a string in a number field", () => {
    expect(valueFor("integer", "4096")).toBe(4096);
    expect(valueFor("integer", "{{ variables.n }}")).toBe("{{ variables.n }}");
    expect(valueFor("boolean", "false")).toBe(false);
    expect(valueFor("text", "")).toBeUndefined();
  });
});

describe("template completion", () => {
  const names = completions({ variables: ["model"], upstream: [{ id: "fetch", fn: fn("http-request", "HTTP", { topic: {} }) }] });
  it("offers the trigger, the variables and the upstream outputs with their fields", () => {
    expect(names).toEqual(expect.arrayContaining(["trigger.data", "variables.model", "fetch.output", "fetch.output.topic", "$now"]));
  });
  it("finds the name being typed and completes it", () => {
    expect(typing("topic: {{ fet", 13)).toEqual({ start: 10, partial: "fet" });
    expect(typing("no template", 5)).toBeNull();
    expect(complete("topic: {{ fet", 13, "fetch.output.topic")).toEqual({ text: "topic: {{ fetch.output.topic}}", caret: 30 });
    expect(complete("a {{var}} b", 7, "variables.model").text).toBe("a {{variables.model}} b");
    expect(typing("size(fet", 8, true)).toEqual({ start: 5, partial: "fet" });
    expect(complete("size(fet", 8, "fetch.output.items", true)).toEqual({ text: "size(fetch.output.items", caret: 23 });
  });
});

describe("problems", () => {
  it("go on the node or edge they name, the rest on the pipeline", () => {
    const placed = place(
      [
        { message: "m1", text: "t1", node: "a" },
        { message: "m2", text: "t2", edge: { index: 0 } },
        { message: "m3", text: "t3" },
        { message: "m4", text: "t4", node: "gone" },
      ],
      ["a", "b"],
    );
    expect(placed.byNode.get("a")?.map((p) => p.message)).toEqual(["m1"]);
    expect(placed.byEdge.get(0)?.map((p) => p.message)).toEqual(["m2"]);
    expect(placed.other.map((p) => p.message)).toEqual(["m3", "m4"]);
  });
});
