// Checks the dashboard makes before it sends: a replay's edited trigger data against what the pipeline's
// templates read (GET /pipelines/{name}/details `inputs`), and a run form's fields.

export interface InputField {
  name: string;
  nodes: string[];
}

export type Checked = { ok: true; value: unknown } | { ok: false; problems: string[] };

export function checkTriggerData(text: string, inputs: InputField[]): Checked {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, problems: [`not JSON: ${(err as Error).message}`] };
  }
  if (inputs.length === 0) return { ok: true, value };
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, problems: [`the pipeline reads trigger.data.${inputs[0].name}: the data must be a JSON object`] };
  }
  const missing = inputs.filter((f) => !(f.name in (value as Record<string, unknown>)));
  if (missing.length) {
    return {
      ok: false,
      problems: missing.map((f) => `missing '${f.name}', which ${f.nodes.join(", ")} ${f.nodes.length > 1 ? "read" : "reads"} as trigger.data.${f.name}`),
    };
  }
  return { ok: true, value };
}

/** A run form's field as the user typed it: JSON when it parses (numbers, lists, objects), else the text. */
export function fieldValue(text: string): unknown {
  const t = text.trim();
  if (t === "") return "";
  try {
    return JSON.parse(t);
  } catch {
    return text;
  }
}
