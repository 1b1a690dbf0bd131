// The pipeline editor (/ui/pipelines/NAME/edit, /ui/pipelines/new): a palette of the router's functions, the
// DAG on a canvas laid out as the run view lays it out, a form for what is selected, and the YAML view. The
// YAML text is the state: every edit is a splice of it (yamledit.ts), the router validates it as it changes,
// and saving PUTs it as it is.

import { memo, useCallback, useEffect, useMemo, useRef, useState } from "react";
import {
  Background,
  Controls,
  Handle,
  Panel,
  Position,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
  type Connection,
  type Edge,
  type Node,
  type NodeChange,
  type NodeProps,
} from "@xyflow/react";
import { useSession } from "../session";
import { useGet } from "../live";
import { navigate } from "../nav";
import { Link, Problem } from "../components/Bits";
import { edgeLabel, elkGraph, loadElk, readLayout, NODE_HEIGHT, NODE_WIDTH, type Layout } from "../layout";
import type { PipelineDoc } from "../types";
import type { PipelineDetails } from "../types";
import { groups, type FunctionInfo } from "./catalogue";
import {
  addEdge,
  addNode,
  asPipeline,
  edgesOf,
  freeId,
  functionOf,
  newPipeline,
  nodesOf,
  read,
  removeEdge,
  removeNode,
  renameNode,
  setEdgeField,
  setField,
  setNodeField,
} from "./model";
import { EdgeForm, NodeForm, PipelineForm } from "./Forms";
import { place, type EditorProblem, type Validation } from "./problems";
import type { Path } from "./yamledit";

/** The run view's layout with room between the layers for the edges' conditions (and a click on them). */
async function layout(pipeline: PipelineDoc): Promise<Layout> {
  const graph = elkGraph(pipeline);
  graph.layoutOptions = { ...graph.layoutOptions, "elk.layered.spacing.nodeNodeBetweenLayers": "150", "elk.spacing.nodeNode": "40" };
  return readLayout(pipeline, await (await loadElk()).layout(graph));
}

type Selection = { kind: "node"; id: string } | { kind: "edge"; index: number } | null;
type XY = { x: number; y: number };
const DRAG_TYPE = "application/x-knflow-function";

interface EnodeData extends Record<string, unknown> {
  id: string;
  fn: string;
  problems: EditorProblem[];
  selected: boolean;
  known: boolean;
}

const Enode = memo(function Enode({ data }: NodeProps<Node<EnodeData>>) {
  const bad = data.problems.length > 0;
  return (
    <div
      className={`knode enode${bad ? " invalid" : ""}${data.selected ? " selected" : ""}`}
      data-testid={`node-${data.id}`}
      data-invalid={bad ? "true" : "false"}
      title={`${data.id} (${data.fn})`}
    >
      <Handle type="target" position={Position.Left} data-testid={`in-${data.id}`} />
      <div className="knode-head">
        <span className="knode-icon">{bad ? "⚠" : "◆"}</span>
        <span className="knode-id">{data.id}</span>
      </div>
      <div className="knode-sub"><span className={data.known ? "" : "err"}>{data.fn}</span></div>
      {bad && <div className="enode-problem" data-testid={`node-problem-${data.id}`}>{data.problems[0].message}</div>}
      <Handle type="source" position={Position.Right} data-testid={`out-${data.id}`} />
    </div>
  );
});
const nodeTypes = { enode: Enode };

export default function EditorPage({ name }: { name: string | null }) {
  const { api, can } = useSession();
  const functions = useGet<FunctionInfo[]>(api, "/functions");
  const catalogue = useMemo(() => new Map((functions.data ?? []).map((f) => [f.name, f])), [functions.data]);
  const [text, setText] = useState<string | null>(name ? null : newPipeline());
  const [base, setBase] = useState<string | null>(name ? null : "");
  const [loadError, setLoadError] = useState<Error | null>(null);
  const [view, setView] = useState<"canvas" | "yaml">("canvas");
  const [selected, setSelected] = useState<Selection>(null);
  const [positions, setPositions] = useState<Record<string, XY>>({});
  const [validation, setValidation] = useState<(Validation & { for: string }) | null>(null);
  const [editError, setEditError] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const [saveError, setSaveError] = useState<Error | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [trying, setTrying] = useState(false);
  const [tryData, setTryData] = useState("{}");
  const loadedFor = useRef<string | null>(name ? null : "");

  // load the pipeline's YAML (once per name: not again after this page saved a new one under its name)
  useEffect(() => {
    if (name === null) {
      if (loadedFor.current === "") return;
      loadedFor.current = ""; // from another pipeline's editor to a new one
      setText(newPipeline());
      setBase("");
      setPositions({});
      setSelected(null);
      return;
    }
    if (loadedFor.current === name) return;
    loadedFor.current = name;
    setPositions({});
    setSelected(null);
    api
      .get<PipelineDetails>(`/pipelines/${encodeURIComponent(name)}/details`)
      .then((d) => {
        setText(d.yaml);
        setBase(d.yaml);
      })
      .catch((err: Error) => setLoadError(err));
  }, [api, name]);

  const draft = useMemo(() => (text === null ? null : read(text)), [text]);
  const nodes = nodesOf(draft);
  const edges = edgesOf(draft);
  const ids = nodes.map((n) => String(n.id));

  // the router's validator on every change (debounced)
  useEffect(() => {
    if (text === null) return;
    const abort = new AbortController();
    const timer = setTimeout(() => {
      api
        .text<Validation>("POST", "/pipelines/validate", text, abort.signal)
        .then((v) => setValidation({ ...v, for: text }))
        .catch((err: Error) => {
          if (!abort.signal.aborted) setValidation({ valid: false, problems: [{ message: err.message, text: err.message }], for: text });
        });
    }, 250);
    return () => {
      clearTimeout(timer);
      abort.abort();
    };
  }, [api, text]);

  // lay out the nodes that have no place yet (all of them at first; those a YAML edit added later)
  const idsKey = JSON.stringify([ids, edges.map((e) => [e.from, e.to])]);
  useEffect(() => {
    if (!draft || ids.every((id) => positions[id])) return;
    let live = true;
    layout(asPipeline(draft))
      .then((laid) => {
        if (!live) return;
        if (Object.keys(positions).length === 0) setTimeout(() => window.dispatchEvent(new Event("knflow-fit")), 60);
        setPositions((old) => {
          const next = { ...old };
          for (const n of laid.nodes) if (!next[n.id]) next[n.id] = { x: n.x, y: n.y };
          return next;
        });
      })
      .catch(() => undefined);
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [idsKey]);

  // every edit goes through here: `how` maps the current text to the next (a throw is shown, not applied)
  const textRef = useRef(text);
  textRef.current = text;
  const change = useCallback((how: (t: string) => string) => {
    const t = textRef.current;
    if (t === null) return;
    try {
      const next = how(t);
      textRef.current = next;
      setText(next);
      setEditError(null);
      setSaved(null);
    } catch (err) {
      setEditError((err as Error).message);
    }
  }, []);

  const current = validation && validation.for === text ? validation : null;
  const dirtyNow = text !== null && base !== null && text !== base;
  useEffect(() => {
    if (!dirtyNow) return;
    const warn = (e: BeforeUnloadEvent) => e.preventDefault(); // unsaved changes: the browser asks first
    window.addEventListener("beforeunload", warn);
    return () => window.removeEventListener("beforeunload", warn);
  }, [dirtyNow]);
  const placed = place(current?.problems ?? [], ids);
  const dirty = text !== null && text !== base;
  const pipelineName = draft?.metadata?.name ?? "";
  const canSave = can("admin") && current?.valid === true && !saving && (dirty || name === null) && !!pipelineName && (name === null || pipelineName === name);

  const save = async (): Promise<boolean> => {
    if (text === null || !canSave) return !dirty && name !== null;
    setSaving(true);
    setSaveError(null);
    try {
      await api.text("PUT", `/pipelines/${encodeURIComponent(pipelineName)}`, text);
      setBase(text);
      setSaved(`saved ${pipelineName}`);
      if (name === null) {
        loadedFor.current = pipelineName;
        navigate(`/pipelines/${encodeURIComponent(pipelineName)}/edit`, true);
      }
      return true;
    } catch (err) {
      setSaveError(err as Error);
      return false;
    } finally {
      setSaving(false);
    }
  };

  const tryIt = async () => {
    let body: unknown;
    try {
      body = JSON.parse(tryData || "{}");
    } catch (err) {
      setSaveError(new Error(`the sample input is not JSON: ${(err as Error).message}`));
      return;
    }
    if ((dirty || name === null) && !(await save())) return;
    try {
      const answer = await api.post<{ run: string }>(`/pipelines/${encodeURIComponent(pipelineName)}/runs`, body);
      navigate(`/runs/${answer.run}`);
    } catch (err) {
      setSaveError(err as Error);
    }
  };

  if (loadError) return <div className="page"><Problem error={loadError} /></div>;
  if (text === null) return <div className="page muted">loading {name}…</div>;

  const selectedNode = selected?.kind === "node" ? nodes.find((n) => n.id === selected.id) : undefined;
  const status = current === null ? "pending" : current.valid ? "valid" : "invalid";
  return (
    <div className="page editor-page" data-testid="editor">
      <div className="run-head">
        <h1>{name ? <>Edit {name}</> : "New pipeline"}</h1>
        <span className={`badge ${status === "valid" ? "st-succeeded" : status === "invalid" ? "st-failed" : "st-pending"}`} data-testid="validity" data-state={status}>
          {status === "pending" ? "checking…" : status === "valid" ? "valid" : `${current?.problems.length} problem${current?.problems.length === 1 ? "" : "s"}`}
        </span>
        {dirty && <span className="muted small" data-testid="dirty">unsaved changes</span>}
        {saved && <span className="small" data-testid="saved">{saved}</span>}
        <span className="spacer" />
        <div className="seg">
          <button className={view === "canvas" ? "on" : ""} data-testid="view-canvas" onClick={() => setView("canvas")}>Canvas</button>
          <button className={view === "yaml" ? "on" : ""} data-testid="view-yaml" onClick={() => setView("yaml")}>YAML</button>
        </div>
        {name && <Link to={`/pipelines/${encodeURIComponent(name)}`}>pipeline →</Link>}
        <button className="ghost" data-testid="try" disabled={!can("admin")} onClick={() => setTrying((t) => !t)}>Try it</button>
        <button className="primary" data-testid="save" disabled={!canSave} onClick={() => void save()} title={can("admin") ? "PUT /pipelines/NAME" : "saving needs a token of scope admin"}>
          {saving ? "Saving…" : "Save"}
        </button>
      </div>
      {trying && (
        <div className="card try" data-testid="try-panel">
          <span className="muted small">Saves the draft, runs it with this trigger data and opens the run:</span>
          <textarea rows={2} className="json-editor" value={tryData} spellCheck={false} data-testid="try-data" onChange={(e) => setTryData(e.target.value)} />
          <button className="primary" data-testid="try-run" disabled={current?.valid !== true} onClick={() => void tryIt()}>Run</button>
        </div>
      )}
      {editError && <div className="problem">{editError}</div>}
      <Problem error={saveError} />
      <div className="editor-body">
        <Palette functions={functions.data ?? []} error={functions.error} onAdd={(fn) => change((t) => addNode(t, freeId(t, fn), fn))} />
        <div className="editor-main">
          {view === "canvas" ? (
            draft ? (
              <ReactFlowProvider>
                <Canvas
                  text={text}
                  positions={positions}
                  setPositions={setPositions}
                  selected={selected}
                  setSelected={setSelected}
                  catalogue={catalogue}
                  problems={placed}
                  change={change}
                />
              </ReactFlowProvider>
            ) : (
              <div className="problem">The YAML does not parse: fix it in the YAML view.</div>
            )
          ) : (
            <textarea className="yaml-editor" value={text} spellCheck={false} data-testid="yaml-editor" onChange={(e) => setText(e.target.value)} />
          )}
          <ul className="problem-list" data-testid="problems">
            {(current?.problems ?? []).map((p, i) => (
              <li
                key={i}
                data-testid="problem"
                onClick={() => {
                  if (p.edge) setSelected({ kind: "edge", index: p.edge.index });
                  else if (p.node && ids.includes(p.node)) setSelected({ kind: "node", id: p.node });
                }}
              >
                {p.text}
              </li>
            ))}
          </ul>
        </div>
        <aside className="editor-side">
          {draft && selectedNode ? (
            <NodeForm
              key={`node-${selectedNode.id}`}
              draft={draft}
              node={selectedNode}
              fn={catalogue.get(functionOf(selectedNode))}
              catalogue={catalogue}
              problems={placed.byNode.get(selectedNode.id) ?? []}
              onSet={(path: Path, value) => change((t) => setNodeField(t, selectedNode.id, path, value))}
              onMove={(field, from, value) => {
                if (from === value) return;
                change((t) => {
                  const node = nodesOf(read(t)).find((n) => n.id === selectedNode.id);
                  const v = (node?.[from] as Record<string, unknown> | undefined)?.[field];
                  return setNodeField(setNodeField(t, selectedNode.id, [from, field], undefined), selectedNode.id, [value as string, field], v);
                });
              }}
              onRename={(to) => {
                change((t) => renameNode(t, selectedNode.id, to));
                setPositions((p) => ({ ...p, [to]: p[selectedNode.id] }));
                setSelected({ kind: "node", id: to });
              }}
              onDelete={() => {
                change((t) => removeNode(t, selectedNode.id));
                setSelected(null);
              }}
              onSelectEdge={(index) => setSelected({ kind: "edge", index })}
            />
          ) : draft && selected?.kind === "edge" && edges[selected.index] ? (
            <EdgeForm
              key={`edge-${selected.index}`}
              draft={draft}
              catalogue={catalogue}
              index={selected.index}
              problems={placed.byEdge.get(selected.index) ?? []}
              onSet={(key, value) => change((t) => setEdgeField(t, selected.index, key, value))}
              onDelete={() => {
                change((t) => removeEdge(t, selected.index));
                setSelected(null);
              }}
            />
          ) : draft ? (
            <PipelineForm draft={draft} fixedName={name !== null} problems={placed.other} onSet={(path, value) => change((t) => setField(t, path, value))} />
          ) : null}
        </aside>
      </div>
    </div>
  );
}

function Palette({ functions, error, onAdd }: { functions: FunctionInfo[]; error: Error | null; onAdd: (fn: string) => void }) {
  const [filter, setFilter] = useState("");
  return (
    <div className="palette" data-testid="palette">
      <input placeholder="Find a function" value={filter} onChange={(e) => setFilter(e.target.value)} data-testid="palette-filter" />
      <Problem error={error} />
      {groups(functions, filter).map(([category, fns]) => (
        <div key={category} className="palette-group">
          <h4>{category}</h4>
          {fns.map((fn) => (
            <div
              key={fn.name}
              className="palette-item"
              draggable
              data-testid={`palette-${fn.name}`}
              title={`${fn.description}\n\nDrag onto the canvas (or double-click, or Enter)`}
              onDragStart={(e) => {
                e.dataTransfer.setData(DRAG_TYPE, fn.name);
                e.dataTransfer.effectAllowed = "copy";
              }}
              tabIndex={0}
              onDoubleClick={() => onAdd(fn.name)}
              onKeyDown={(e) => e.key === "Enter" && onAdd(fn.name)}
            >
              <div className="palette-name">{fn.name}</div>
              <div className="palette-doc">{fn.description.split("\n")[0]}</div>
            </div>
          ))}
        </div>
      ))}
    </div>
  );
}

function Canvas(props: {
  text: string;
  positions: Record<string, XY>;
  setPositions: React.Dispatch<React.SetStateAction<Record<string, XY>>>;
  selected: Selection;
  setSelected: (s: Selection) => void;
  catalogue: Map<string, FunctionInfo>;
  problems: ReturnType<typeof place>;
  change: (how: (t: string) => string) => void;
}) {
  const { screenToFlowPosition, fitView } = useReactFlow();
  const [fits, setFits] = useState(0); // how often "Lay out" has fitted the view (the browser tests wait on it)
  useEffect(() => {
    const fit = () => void fitView({ padding: 0.2, maxZoom: 1.1 });
    window.addEventListener("knflow-fit", fit);
    return () => window.removeEventListener("knflow-fit", fit);
  }, [fitView]);
  const relayout = async () => {
    const laid = await layout(asPipeline(read(props.text)));
    props.setPositions(Object.fromEntries(laid.nodes.map((n) => [n.id, { x: n.x, y: n.y }])));
    setTimeout(() => void fitView({ padding: 0.2, maxZoom: 1.1 }).then(() => setFits((f) => f + 1)), 60);
  };
  const draft = read(props.text);
  const list = nodesOf(draft);
  const edgeList = edgesOf(draft);
  const nodes: Node<EnodeData>[] = list.map((n, i) => ({
    id: String(n.id),
    type: "enode",
    position: props.positions[String(n.id)] ?? { x: 40 + i * 40, y: 40 + i * 30 },
    width: NODE_WIDTH,
    height: NODE_HEIGHT,
    selected: props.selected?.kind === "node" && props.selected.id === n.id,
    data: {
      id: String(n.id),
      fn: functionOf(n),
      problems: props.problems.byNode.get(String(n.id)) ?? [],
      selected: props.selected?.kind === "node" && props.selected.id === n.id,
      known: props.catalogue.size === 0 || props.catalogue.has(functionOf(n)),
    },
  }));
  const edges: Edge[] = edgeList.map((e, i) => {
    const bad = props.problems.byEdge.has(i);
    const chosen = props.selected?.kind === "edge" && props.selected.index === i;
    const label = edgeLabel({ ...e, from: String(e.from), to: String(e.to) });
    return {
      id: `e${i}`,
      source: String(e.from),
      target: String(e.to),
      label: bad ? `⚠ ${label ?? props.problems.byEdge.get(i)?.[0].message}` : label,
      className: `edge${bad ? " edge-invalid" : ""}${chosen ? " edge-selected" : ""}`,
      selected: chosen,
      interactionWidth: 24,
    };
  });
  const onNodesChange = (changes: NodeChange<Node<EnodeData>>[]) => {
    const moved = changes.filter((c) => c.type === "position" && c.position);
    if (moved.length) {
      props.setPositions((old) => {
        const next = { ...old };
        for (const c of moved) if (c.type === "position" && c.position) next[c.id] = c.position;
        return next;
      });
    }
  };
  return (
    <div
      className="dag editor-canvas"
      data-testid="canvas"
      data-fits={fits}
      onDragOver={(e) => {
        if (e.dataTransfer.types.includes(DRAG_TYPE)) {
          e.preventDefault();
          e.dataTransfer.dropEffect = "copy";
        }
      }}
      onDrop={(e) => {
        const fn = e.dataTransfer.getData(DRAG_TYPE);
        if (!fn) return;
        e.preventDefault();
        const at = screenToFlowPosition({ x: e.clientX, y: e.clientY });
        const id = freeId(props.text, fn);
        props.setPositions((p) => ({ ...p, [id]: { x: at.x - NODE_WIDTH / 2, y: at.y - NODE_HEIGHT / 2 } }));
        props.change((t) => addNode(t, id, fn));
        props.setSelected({ kind: "node", id });
      }}
    >
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        fitView
        fitViewOptions={{ padding: 0.2, maxZoom: 1.1 }}
        minZoom={0.1}
        deleteKeyCode="Delete"
        onDelete={({ nodes: gone, edges: cut }) => {
          const removed = new Set(gone.map((n) => n.id));
          const indexes = cut.map((e) => Number(e.id.slice(1))).sort((a, b) => b - a);
          props.change((t) => {
            let out = t;
            for (const i of indexes) {
              const e = edgesOf(read(out))[i];
              if (e && !removed.has(String(e.from)) && !removed.has(String(e.to))) out = removeEdge(out, i);
            }
            for (const id of removed) out = removeNode(out, id);
            return out;
          });
          props.setSelected(null);
        }}
        proOptions={{ hideAttribution: true }}
        onNodesChange={onNodesChange}
        onConnect={(c: Connection) => c.source && c.target && c.source !== c.target && props.change((t) => addEdge(t, c.source, c.target))}
        onNodeClick={(_, n) => props.setSelected({ kind: "node", id: n.id })}
        onEdgeClick={(_, e) => props.setSelected({ kind: "edge", index: Number(e.id.slice(1)) })}
        onPaneClick={() => props.setSelected(null)}
      >
        <Background gap={20} size={1} />
        <Controls showInteractive={false} />
        <Panel position="top-right">
          <button className="small" data-testid="relayout" title="Lay the DAG out again, as the run view does" onClick={() => void relayout()}>Lay out</button>
        </Panel>
      </ReactFlow>
    </div>
  );
}
