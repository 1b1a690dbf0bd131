// The function catalogue (GET /functions) as the editor uses it: the palette's groups, a form's fields from a
// function's input JSON Schema, and the template completions a field offers.

export interface JsonSchema {
  type?: string | string[];
  enum?: unknown[];
  anyOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  description?: string;
  title?: string;
  default?: unknown;
  format?: string;
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
}

export interface FunctionInfo {
  name: string;
  description: string;
  category: string;
  builtin: boolean;
  traits: Record<string, unknown>;
  input_schema: JsonSchema;
  output_schema: JsonSchema;
}

export const CATEGORY_ORDER = ["HTTP", "transform", "logic", "AI", "database", "utility", "custom"];

export function groups(functions: FunctionInfo[], filter = ""): [string, FunctionInfo[]][] {
  const f = filter.trim().toLowerCase();
  const by = new Map<string, FunctionInfo[]>();
  for (const fn of functions) {
    if (f && !fn.name.toLowerCase().includes(f) && !fn.description.toLowerCase().includes(f)) continue;
    by.set(fn.category, [...(by.get(fn.category) ?? []), fn]);
  }
  const rank = (c: string) => (CATEGORY_ORDER.includes(c) ? CATEGORY_ORDER.indexOf(c) : CATEGORY_ORDER.length);
  return [...by.entries()].sort((a, b) => rank(a[0]) - rank(b[0]) || a[0].localeCompare(b[0]));
}

export type Kind = "text" | "number" | "integer" | "boolean" | "enum" | "yaml";

export interface Field {
  name: string;
  kind: Kind;
  required: boolean;
  options: string[];
  description: string;
  secret: boolean;
}

function resolve(schema: JsonSchema, root: JsonSchema): JsonSchema {
  if (schema.$ref?.startsWith("#/$defs/")) return root.$defs?.[schema.$ref.slice(8)] ?? schema;
  return schema;
}

/** The kind of input a property takes (its nullable `anyOf` read through). */
export function kindOf(schema: JsonSchema, root: JsonSchema = schema): { kind: Kind; options: string[]; secret: boolean } {
  const s = resolve(schema, root);
  const variants = (s.anyOf ?? [s]).map((v) => resolve(v, root)).filter((v) => v.type !== "null");
  const secret = variants.some((v) => v.format === "password");
  if (variants.length === 1) {
    const v = variants[0];
    if (v.enum) return { kind: "enum", options: v.enum.map(String), secret };
    if (v.type === "string") return { kind: "text", options: [], secret };
    if (v.type === "integer") return { kind: "integer", options: [], secret };
    if (v.type === "number") return { kind: "number", options: [], secret };
    if (v.type === "boolean") return { kind: "boolean", options: [], secret };
  }
  return { kind: "yaml", options: [], secret };
}

export function fields(schema: JsonSchema | undefined): Field[] {
  if (!schema?.properties) return [];
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties).map(([name, prop]) => {
    const { kind, options, secret } = kindOf(prop, schema);
    return { name, kind, options, required: required.has(name), secret, description: resolve(prop, schema).description ?? prop.description ?? "" };
  });
}

/** What a typed text means for a field of `kind`: a number where the field takes one and the text is one (a
 * template stays text), true/false for a boolean; "" is no value. */
export function valueFor(kind: Kind, text: string): unknown {
  if (text === "") return undefined;
  if ((kind === "number" || kind === "integer") && /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(text.trim())) return Number(text);
  if (kind === "boolean" && (text === "true" || text === "false")) return text === "true";
  return text;
}

export function textFor(value: unknown): string {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : String(value);
}

/** The names a template can read at a node: the trigger's data, the pipeline's variables, and each upstream
 * node's output (with its output schema's fields). */
export function completions(opts: {
  variables: string[];
  upstream: { id: string; fn?: FunctionInfo }[];
  triggerFields?: string[];
  fanout?: boolean;
}): string[] {
  const out = ["trigger.data", ...(opts.triggerFields ?? []).map((f) => `trigger.data.${f}`)];
  out.push(...opts.variables.map((v) => `variables.${v}`));
  for (const u of opts.upstream) {
    out.push(`${u.id}.output`);
    for (const p of Object.keys(u.fn?.output_schema?.properties ?? {})) out.push(`${u.id}.output.${p}`);
  }
  if (opts.fanout) out.push("item", "index");
  out.push("$now");
  return out;
}

/** The partial template name being typed at `caret` (after an open `{{`; in a CEL condition, any name), or
 * null when none is. */
export function typing(text: string, caret: number, cel = false): { start: number; partial: string } | null {
  const before = text.slice(0, caret);
  const m = cel ? /(?:^|[^\w.$-])([\w$][\w.$-]*)$/.exec(before) : /\{\{\s*([\w.$-]*)$/.exec(before);
  if (!m) return null;
  return { start: caret - m[1].length, partial: m[1] };
}

/** `text` with the name being typed at `caret` completed to `name` (and a template closed). */
export function complete(text: string, caret: number, name: string, cel = false): { text: string; caret: number } {
  const t = typing(text, caret, cel);
  if (!t) return { text, caret };
  const after = text.slice(caret);
  const close = cel || /^\s*\}\}/.test(after) ? "" : "}}";
  const inserted = name + close;
  return { text: text.slice(0, t.start) + inserted + after, caret: t.start + inserted.length };
}
