// The side panel's forms: a node (its function's input fields from the input JSON Schema, put in `config` or
// `inputs`, and retry, timeout, foreach, runOn, scaling), an edge (`when`, `branch`) and the pipeline itself.

import { useEffect, useState } from "react";
import { completions, fields, type FunctionInfo } from "./catalogue";
import { edgesOf, functionOf, nodesOf, upstream, type Draft, type DraftNode } from "./model";
import { Choice, Row, TemplateBox, YamlBox } from "./Fields";
import type { Path } from "./yamledit";
import type { EditorProblem } from "./problems";

const RUN_ON = ["engine", "cpu", "gpu"]; // router/pipeline_doc.py RUN_ON
const BACKOFF = ["exponential", "linear"];
const TRIGGERS = ["webhook", "cron", "cloudevent", "manual"];

function obj(value: unknown): Record<string, unknown> {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function Problems({ problems }: { problems: EditorProblem[] }) {
  if (!problems.length) return null;
  return (
    <ul className="problems" data-testid="form-problems">
      {problems.map((p, i) => <li key={i}>{p.field ? <code>{p.field}</code> : null} {p.message}</li>)}
    </ul>
  );
}

export function NodeForm(props: {
  draft: Draft;
  node: DraftNode;
  fn?: FunctionInfo;
  catalogue: Map<string, FunctionInfo>;
  problems: EditorProblem[];
  onSet: (path: Path, value: unknown) => void;
  onMove: (name: string, from: "config" | "inputs", value: unknown) => void;
  onRename: (to: string) => void;
  onDelete: () => void;
  onSelectEdge: (index: number) => void;
}) {
  const { node, fn, draft } = props;
  const [id, setId] = useState(node.id);
  const [whereFor, setWhereFor] = useState<Record<string, "config" | "inputs">>({}); // an empty field's choice
  useEffect(() => setId(node.id), [node.id]);
  const ids = nodesOf(draft).map((n) => n.id);
  const idProblem = !id ? "an id is needed" : id !== node.id && ids.includes(id) ? `'${id}' is taken` : null;
  const config = obj(node.config);
  const inputs = obj(node.inputs);
  const inputsAreText = node.inputs !== undefined && (typeof node.inputs !== "object" || Array.isArray(node.inputs));
  const known = fields(fn?.input_schema);
  const extra = [...new Set([...Object.keys(config), ...Object.keys(inputs)])].filter((k) => !known.some((f) => f.name === k));
  const fanout = node.foreach !== undefined || node.loop !== undefined || node.replicas !== undefined;
  const suggestions = completions({
    variables: Object.keys(obj(draft.variables)),
    upstream: upstream(draft, node.id).map((u) => ({ id: u, fn: props.catalogue.get(functionOf(nodesOf(draft).find((n) => n.id === u) ?? {})) })),
    fanout,
  });
  const retry = obj(node.retry);
  const out = edgesOf(draft).map((e, i) => ({ e, i })).filter(({ e }) => e.from === node.id || e.to === node.id);
  return (
    <div className="eform" data-testid="node-form">
      <h3>{node.id} <span className="muted small">{functionOf(node)}</span></h3>
      {fn ? <p className="muted small fn-doc">{fn.description.split("\n\n")[0]}</p> : <p className="err small">unknown function {functionOf(node)}</p>}
      <Problems problems={props.problems} />
      <Row label="id">
        <input
          value={id}
          data-testid="field-id"
          onChange={(e) => setId(e.target.value.trim())}
          onBlur={() => !idProblem && props.onRename(id)}
          onKeyDown={(e) => e.key === "Enter" && !idProblem && props.onRename(id)}
        />
      </Row>
      {idProblem && <div className="err small">{idProblem}</div>}
      <Row label="description">
        <TemplateBox value={node.description} testId="field-description" onCommit={(v) => props.onSet(["description"], v)} />
      </Row>
      <h4>Input</h4>
      {inputsAreText && (
        <Row label="inputs" hint="the whole input as one template or value">
          <YamlBox value={node.inputs} testId="field-inputs" onCommit={(v) => props.onSet(["inputs"], v)} />
        </Row>
      )}
      {known.map((f) => {
        const where = f.name in inputs ? "inputs" : f.name in config ? "config" : (whereFor[f.name] ?? "config");
        const value = where === "inputs" ? inputs[f.name] : config[f.name];
        const set = (v: unknown) => props.onSet([where, f.name], v);
        const whereBox = (
          <select
            className="where"
            value={where}
            data-testid={`where-${f.name}`}
            title="config: fixed for the node; inputs: laid over config, usually templates"
            onChange={(e) => {
              const to = e.target.value as "config" | "inputs";
              setWhereFor((w) => ({ ...w, [f.name]: to }));
              if (value !== undefined) props.onMove(f.name, where, to);
            }}
          >
            <option value="config">config</option>
            <option value="inputs">inputs</option>
          </select>
        );
        return (
          <Row key={f.name} label={f.name} hint={f.description} required={f.required} extra={whereBox}>
            {f.kind === "enum" || f.kind === "boolean" ? (
              <Choice value={value} options={f.kind === "boolean" ? ["true", "false"] : f.options} kind={f.kind} testId={`field-${f.name}`} onCommit={set} />
            ) : f.kind === "yaml" ? (
              <YamlBox value={value} testId={`field-${f.name}`} onCommit={set} />
            ) : (
              <TemplateBox value={value} kind={f.kind} testId={`field-${f.name}`} suggestions={suggestions} onCommit={set} />
            )}
          </Row>
        );
      })}
      {extra.map((k) => (
        <Row key={k} label={k} hint="not a field of the function's input" extra={<span className="err small"> ?</span>}>
          <YamlBox value={k in inputs ? inputs[k] : config[k]} testId={`field-${k}`} onCommit={(v) => props.onSet([k in inputs ? "inputs" : "config", k], v)} />
        </Row>
      ))}
      <h4>Run</h4>
      <div className="grid2">
        <Row label="runOn"><Choice value={node.runOn} options={RUN_ON} testId="field-runOn" onCommit={(v) => props.onSet(["runOn"], v)} /></Row>
        <Row label="timeout_s"><TemplateBox value={node.timeout_s} kind="number" testId="field-timeout_s" onCommit={(v) => props.onSet(["timeout_s"], v)} /></Row>
        <Row label="retries"><TemplateBox value={retry.retries} kind="integer" testId="field-retry.retries" onCommit={(v) => props.onSet(["retry", "retries"], v)} /></Row>
        <Row label="backoff"><Choice value={retry.backoff} options={BACKOFF} testId="field-retry.backoff" onCommit={(v) => props.onSet(["retry", "backoff"], v)} /></Row>
        <Row label="delay_s"><TemplateBox value={retry.delay_s} kind="number" testId="field-retry.delay_s" onCommit={(v) => props.onSet(["retry", "delay_s"], v)} /></Row>
        <Row label="max_delay_s"><TemplateBox value={retry.max_delay_s} kind="number" testId="field-retry.max_delay_s" onCommit={(v) => props.onSet(["retry", "max_delay_s"], v)} /></Row>
      </div>
      {fn?.traits?.retry !== undefined && <div className="muted small wrap">the function's own default: {JSON.stringify(fn.traits.retry)}</div>}
      <Row label="foreach" hint="a template that renders to a list: one invoke per item ({{ item }}, {{ index }})">
        <TemplateBox value={node.foreach} testId="field-foreach" suggestions={suggestions} onCommit={(v) => props.onSet(["foreach"], v)} />
      </Row>
      <div className="grid2">
        <Row label="concurrency"><TemplateBox value={node.concurrency} kind="integer" testId="field-concurrency" onCommit={(v) => props.onSet(["concurrency"], v)} /></Row>
        <Row label="replicas"><TemplateBox value={node.replicas} kind="integer" testId="field-replicas" onCommit={(v) => props.onSet(["replicas"], v)} /></Row>
      </div>
      <Row label="scaling" hint="the Knative service's scaling (min_scale, max_scale, concurrency...)">
        <YamlBox value={node.scaling} testId="field-scaling" rows={2} onCommit={(v) => props.onSet(["scaling"], v)} />
      </Row>
      {out.length > 0 && <h4>Edges</h4>}
      {out.map(({ e, i }) => (
        <button key={i} className="ghost small edge-link" onClick={() => props.onSelectEdge(i)}>
          {e.from} → {e.to}{e.when ? ` when ${e.when}` : ""}{e.branch !== undefined ? ` [${e.branch}]` : ""}
        </button>
      ))}
      <div className="actions"><span className="spacer" /><button className="danger small" data-testid="delete-node" onClick={props.onDelete}>Delete node</button></div>
    </div>
  );
}

export function EdgeForm(props: {
  draft: Draft;
  catalogue: Map<string, FunctionInfo>;
  index: number;
  problems: EditorProblem[];
  onSet: (key: "when" | "branch", value: string) => void;
  onDelete: () => void;
}) {
  const edge = edgesOf(props.draft)[props.index];
  if (!edge) return null;
  const from = nodesOf(props.draft).find((n) => n.id === edge.from);
  const names = completions({
    variables: Object.keys(obj(props.draft.variables)),
    upstream: [edge.from, ...upstream(props.draft, edge.from)].map((u) => ({ id: u, fn: props.catalogue.get(functionOf(nodesOf(props.draft).find((n) => n.id === u) ?? {})) })),
  }).filter((n) => n !== "$now");
  return (
    <div className="eform" data-testid="edge-form">
      <h3>{edge.from} → {edge.to}</h3>
      {from && <p className="muted small">after {functionOf(from)}; the condition reads the outputs as NODE.output</p>}
      <Problems problems={props.problems} />
      <Row label="when" hint="a CEL condition over the upstream outputs, such as size(fetch.output.items) > 0">
        <TemplateBox value={edge.when} testId="edge-when" cel suggestions={names} placeholder="CEL, e.g. fetch.output.status == 200" onCommit={(v) => props.onSet("when", (v as string) ?? "")} />
      </Row>
      <Row label="branch" hint="the source's output branch (a switch case, or a condition's true/false)">
        <TemplateBox value={edge.branch} testId="edge-branch" onCommit={(v) => props.onSet("branch", (v as string) ?? "")} />
      </Row>
      <div className="actions"><span className="spacer" /><button className="danger small" data-testid="delete-edge" onClick={props.onDelete}>Delete edge</button></div>
    </div>
  );
}

export function PipelineForm(props: { draft: Draft; fixedName: boolean; problems: EditorProblem[]; onSet: (path: Path, value: unknown) => void }) {
  const { draft } = props;
  const trigger = obj(draft.trigger);
  return (
    <div className="eform" data-testid="pipeline-form">
      <h3>Pipeline</h3>
      <Problems problems={props.problems} />
      <Row label="name">
        {props.fixedName ? <code>{draft.metadata?.name}</code> : <TemplateBox value={draft.metadata?.name} testId="pipeline-name" onCommit={(v) => props.onSet(["metadata", "name"], v)} />}
      </Row>
      <Row label="description">
        <TemplateBox value={draft.metadata?.description} testId="pipeline-description" onCommit={(v) => props.onSet(["metadata", "description"], v)} />
      </Row>
      {draft.trigger !== undefined || draft.triggers === undefined ? (
        <>
          <Row label="trigger"><Choice value={trigger.type} options={TRIGGERS} testId="trigger-type" onCommit={(v) => props.onSet(["trigger", "type"], v)} /></Row>
          {trigger.type === "cron" && (
            <Row label="schedule"><TemplateBox value={trigger.schedule} testId="trigger-schedule" placeholder="0 9 * * *" onCommit={(v) => props.onSet(["trigger", "schedule"], v)} /></Row>
          )}
          {trigger.type === "cloudevent" && (
            <Row label="filter"><YamlBox value={trigger.filter} testId="trigger-filter" onCommit={(v) => props.onSet(["trigger", "filter"], v)} /></Row>
          )}
        </>
      ) : (
        <p className="muted small">Several triggers: edit them in the YAML view.</p>
      )}
      <Row label="variables" hint="{{ variables.NAME }} in any template">
        <YamlBox value={draft.variables} testId="pipeline-variables" onCommit={(v) => props.onSet(["variables"], v)} />
      </Row>
      <p className="muted small">Drag a function from the palette onto the canvas; drag from a node's right handle to another's left to connect them. Click a node or an edge to edit it.</p>
    </div>
  );
}
