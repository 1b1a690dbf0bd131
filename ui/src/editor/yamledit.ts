// The editor's source of truth is the YAML text itself. Every edit the canvas or a form makes is one path
// operation on that text (set a value, delete one, append to a list) done as a splice of the smallest part of
// the text it changes: the rest keeps its bytes, its comments and its order. Each splice is checked against
// the same edit made with the `yaml` package's Document API; when they disagree (a shape the splice does not
// handle) the Document's own rendering is used, which is right but may restyle the document.

import { isCollection, isMap, isScalar, isSeq, parseDocument, stringify, type Document, type Node, type Pair, type Scalar } from "yaml";

export type Path = (string | number)[];

const OPTIONS = { lineWidth: 0, indentSeq: true } as const;

export function parse(text: string): Document.Parsed {
  return parseDocument(text, { keepSourceTokens: false, uniqueKeys: false });
}

/** The document as plain data; null when the text is not YAML (see `yamlErrors`). */
export function data(text: string): unknown {
  const doc = parse(text);
  return doc.errors.length ? null : doc.toJS();
}

export function yamlErrors(text: string): string[] {
  return parse(text).errors.map((e) => e.message.split("\n")[0]);
}

function equal(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function lineStart(text: string, at: number): number {
  return text.lastIndexOf("\n", at - 1) + 1;
}

function lineEnd(text: string, at: number): number {
  const nl = text.indexOf("\n", at);
  return nl === -1 ? text.length : nl + 1;
}

function column(text: string, at: number): number {
  return at - lineStart(text, at);
}

function indent(block: string, spaces: number): string {
  const pad = " ".repeat(spaces);
  return block
    .replace(/\n$/, "")
    .split("\n")
    .map((l) => (l ? pad + l : l))
    .join("\n") + "\n";
}

function isFlow(node: unknown): boolean {
  return isCollection(node) && Boolean(node.flow);
}

/** A scalar as it goes after `key: ` on one line, in the style the old one had where it can. */
function inlineScalar(value: unknown, old?: Scalar): string | null {
  if (value !== null && typeof value === "object") return null;
  if (typeof value === "string" && value.includes("\n")) return null;
  if (typeof value === "string" && old?.type === "QUOTE_DOUBLE") return JSON.stringify(value);
  if (typeof value === "string" && old?.type === "QUOTE_SINGLE") return `'${value.replace(/'/g, "''")}'`;
  const text = stringify(value, OPTIONS).replace(/\n$/, "");
  return text.includes("\n") ? null : text;
}

const FLOW_UNSAFE = /[,[\]{}#:&*!|>'"%@`]|^\s|\s$|^-|^\?/;

/** `value` in flow style as people write it: `{from: a, to: b}`, `[x, y]`. */
export function flowText(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(flowText).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${flowText(k)}: ${flowText(v)}`).join(", ")}}`;
  }
  if (typeof value === "string") {
    const plain = stringify(value, OPTIONS).replace(/\n$/, "");
    return plain === value && !FLOW_UNSAFE.test(value) ? value : JSON.stringify(value);
  }
  return stringify(value, OPTIONS).replace(/\n$/, "");
}

function pairOf(parent: Node, key: string | number): Pair | undefined {
  if (!isMap(parent)) return undefined;
  return parent.items.find((p) => isScalar(p.key) && p.key.value === key) as Pair | undefined;
}

/** The document's rendering of `value` as `key: value` (block style), indented to `col`. */
function blockPair(key: string | number, value: unknown, col: number): string {
  return indent(stringify({ [key]: value }, OPTIONS), col);
}

function blockItem(value: unknown, col: number): string {
  return indent(stringify([value], OPTIONS), col);
}

/** The splice for setting `path` to `value` (undefined: delete it), or null when the text's shape there is
 * not one it handles. */
function splice(text: string, doc: Document.Parsed, path: Path, value: unknown, append: boolean, block = false): string | null {
  // the deepest part of the path the text has
  let depth = 0;
  let node: unknown = doc.contents;
  while (depth < path.length) {
    const next = isCollection(node) ? node.get(path[depth], true) : undefined;
    if (next === undefined) break;
    node = next;
    depth += 1;
  }
  if (append && depth === path.length && !isSeq(node)) return splice(text, doc, path, [value], false);
  if (!isCollection(node) && depth < path.length) {
    // a scalar (or null) in the way, such as `retry:` with nothing after it: set the whole value there
    if (depth === 0) return null;
    const rest = path.slice(depth);
    return splice(text, doc, path.slice(0, depth), nest(rest, value, append), false);
  }
  if (depth === path.length && !append) {
    // the value exists: replace it, or delete it
    const parent = depth === 0 ? null : (doc.getIn(path.slice(0, -1), true) as Node);
    const key = path[path.length - 1];
    if (!parent || isFlow(parent)) return replaceNode(text, parent, doc, path.slice(0, -1), key, value);
    if (isMap(parent)) {
      const pair = pairOf(parent, key);
      const keyNode = pair?.key as Node | undefined;
      const valueNode = pair?.value as Node | null | undefined;
      if (!pair || !keyNode?.range) return null;
      const start = lineStart(text, keyNode.range[0]);
      const end = valueNode?.range ? valueNode.range[2] : keyNode.range[2];
      if (value === undefined) return text.slice(0, start) + text.slice(lineEnd(text, end - 1));
      if (!block && isFlow(valueNode) && value !== null && typeof value === "object" && valueNode?.range) {
        return text.slice(0, valueNode.range[0]) + flowText(value) + text.slice(valueNode.range[1]);
      }
      if (isScalar(valueNode) && valueNode.range && valueNode.range[1] > valueNode.range[0]) {
        const inline = inlineScalar(value, valueNode);
        if (inline !== null && !valueNode.type?.startsWith("BLOCK")) {
          return text.slice(0, valueNode.range[0]) + inline + text.slice(valueNode.range[1]);
        }
      }
      return text.slice(0, start) + blockPair(key, value, column(text, keyNode.range[0])) + text.slice(lineEnd(text, end - 1));
    }
    if (isSeq(parent)) {
      const item = parent.items[key as number] as Node | undefined;
      if (!item?.range) return null;
      const start = lineStart(text, item.range[0]);
      const end = lineEnd(text, item.range[2] - 1);
      const dash = text.lastIndexOf("-", item.range[0]);
      if (value === undefined) return text.slice(0, start) + text.slice(end);
      if (!block && isFlow(item) && value !== null && typeof value === "object") {
        return text.slice(0, item.range[0]) + flowText(value) + text.slice(item.range[1]);
      }
      return text.slice(0, start) + blockItem(value, column(text, dash)) + text.slice(end);
    }
    return null;
  }
  // add: a key missing in a map, or an item at the end of a list
  if (value === undefined) return text; // deleting what is not there
  const rest = path.slice(depth);
  if (isFlow(node) && (node as { items: unknown[] }).items.length > 0) {
    if (depth === 0) return null;
    const js = (node as Node).toJSON() as unknown;
    return splice(text, doc, path.slice(0, depth), setData(js, rest, value, append), false);
  }
  if (isFlow(node)) {
    // an empty flow collection (`edges: []`): written again in block style with the new entry
    if (depth === 0) return null;
    return splice(text, doc, path.slice(0, depth), setData((node as Node).toJSON(), rest, value, append), false, true);
  }
  if (isSeq(node) && (append || rest.length >= 1)) {
    if (!append && rest[0] !== node.items.length) return null;
    const newValue = append ? value : nest(rest.slice(1), value, false);
    const last = node.items[node.items.length - 1] as Node | undefined;
    if (!last?.range) return null;
    const at = lineEnd(text, last.range[2] - 1);
    const dash = text.lastIndexOf("-", (node.items[0] as Node).range![0]);
    const item = isFlow(last) && newValue !== null && typeof newValue === "object"
      ? `${" ".repeat(column(text, dash))}- ${flowText(newValue)}\n` // among flow items, one more of them
      : blockItem(newValue, column(text, dash));
    return text.slice(0, at) + item + text.slice(at);
  }
  if (isMap(node)) {
    const [key, ...deeper] = rest;
    const newValue = nest(deeper, value, append);
    const last = node.items[node.items.length - 1] as Pair | undefined;
    const lastNode = (last?.value ?? last?.key) as Node | undefined;
    const firstKey = node.items[0]?.key as Node | undefined;
    if (!lastNode?.range || !firstKey?.range) return null;
    const at = lineEnd(text, lastNode.range[2] - 1);
    return text.slice(0, at) + blockPair(key, newValue, column(text, firstKey.range[0])) + text.slice(at);
  }
  return null;
}

function replaceNode(text: string, parent: Node | null, doc: Document.Parsed, parentPath: Path, key: string | number, value: unknown): string | null {
  if (!parent || parentPath.length === 0) return null;
  const js = parent.toJSON() as unknown;
  const updated = setData(js, [key], value, false);
  return splice(text, doc, parentPath, updated, false);
}

function nest(path: Path, value: unknown, append: boolean): unknown {
  if (path.length === 0) return append ? [value] : value;
  const [key, ...rest] = path;
  const inner = nest(rest, value, append);
  return typeof key === "number" ? [inner] : { [key]: inner };
}

/** The same edit on plain data (a copy). */
export function setData(root: unknown, path: Path, value: unknown, append = false): unknown {
  if (path.length === 0) {
    if (append) return [...(Array.isArray(root) ? root : []), value];
    return value;
  }
  const [key, ...rest] = path;
  const base: Record<string | number, unknown> | unknown[] =
    Array.isArray(root) ? [...root] : root && typeof root === "object" ? { ...(root as object) } : typeof key === "number" ? [] : {};
  const child = setData((base as Record<string | number, unknown>)[key], rest, value, append);
  if (child === undefined) {
    if (Array.isArray(base)) base.splice(key as number, 1);
    else delete (base as Record<string | number, unknown>)[key];
  } else (base as Record<string | number, unknown>)[key] = child;
  return base;
}

/** `text` with `path` set to `value` (undefined deletes it; `append` adds `value` to the list at `path`). */
export function edit(text: string, path: Path, value: unknown, append = false): string {
  const doc = parse(text);
  if (doc.errors.length) throw new Error(`the YAML does not parse: ${doc.errors[0].message.split("\n")[0]}`);
  // deleting a map's last key deletes the map (no `retry: {}` left behind)
  while (value === undefined && !append && path.length > 1 && typeof path[path.length - 1] === "string" && typeof path[path.length - 2] === "string") {
    const parent = doc.getIn(path.slice(0, -1));
    if (isMap(parent) && parent.items.length === 1) path = path.slice(0, -1);
    else break;
  }
  if (value === undefined && typeof path[path.length - 1] === "number") {
    const list = doc.getIn(path.slice(0, -1));
    if (isSeq(list) && list.items.length === 1 && path.length > 1) return edit(text, path.slice(0, -1), []);
  }
  const want = setData(doc.toJS(), path, value, append);
  if (equal(want, doc.toJS())) return text; // no change: not a byte moves
  let spliced: string | null = null;
  try {
    spliced = splice(text, doc, path, value, append);
  } catch {
    spliced = null;
  }
  if (spliced !== null) {
    const back = parse(spliced);
    if (!back.errors.length && equal(back.toJS(), want)) return spliced;
  }
  // the Document API's own edit: right, restyled
  if (append) doc.addIn(path, doc.createNode(value));
  else if (value === undefined) doc.deleteIn(path);
  else doc.setIn(path, doc.createNode(value));
  return doc.toString(OPTIONS);
}

/** Several edits in a row. */
export function edits(text: string, changes: { path: Path; value: unknown; append?: boolean }[]): string {
  return changes.reduce((t, c) => edit(t, c.path, c.value, c.append ?? false), text);
}

