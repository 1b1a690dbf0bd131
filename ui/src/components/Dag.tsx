import { memo, useEffect, useMemo, useState } from "react";
import { Background, Controls, Handle, Position, ReactFlow, useReactFlow, useStore, type Edge, type Node, type NodeProps } from "@xyflow/react";
import { layout, type Layout } from "../layout";
import { isFanout, progressBar, progressOf, progressText, tone } from "../states";
import type { NodeRecord, PipelineDoc } from "../types";
import { duration } from "../format";

interface KnodeData extends Record<string, unknown> {
  id: string;
  fn: string;
  state?: NodeRecord;
  fanout: boolean;
  selected: boolean;
}

const Knode = memo(function Knode({ data }: NodeProps<Node<KnodeData>>) {
  const t = tone(data.state?.status ?? "pending");
  const p = data.state && isFanout(data.state) ? progressOf(data.state) : null;
  return (
    <div
      className={`knode ${t.className}${data.selected ? " selected" : ""}`}
      data-testid={`node-${data.id}`}
      data-status={t.status}
      data-shown={t.label}
      title={`${data.id} (${data.fn}): ${t.label}`}
    >
      <Handle type="target" position={Position.Left} />
      <div className="knode-head">
        <span className="knode-icon">{t.icon}</span>
        <span className="knode-id">{data.id}</span>
        {data.state && data.state.attempt > 1 && <span className="knode-attempt">#{data.state.attempt}</span>}
      </div>
      <div className="knode-sub">
        <span>{data.fn}</span>
        <span>{data.state?.duration_ms !== undefined ? duration(data.state.duration_ms) : t.label}</span>
      </div>
      {data.fanout && (
        <div className="knode-fan">
          <div className="fanbar">
            {p && progressBar(p).map((part) => (
              <span key={part.status} style={{ width: `${part.share * 100}%`, background: `var(--st-${part.status})` }} />
            ))}
          </div>
          <span data-testid={`progress-${data.id}`}>{p ? progressText(p) : "foreach"}</span>
        </div>
      )}
      <Handle type="source" position={Position.Right} />
    </div>
  );
});

const nodeTypes = { knode: Knode };

/** Fit the graph again when its box changes size (the node panel opens or closes, the window resizes). */
function FitOnResize() {
  const { fitView } = useReactFlow();
  const width = useStore((s) => s.width);
  const height = useStore((s) => s.height);
  useEffect(() => {
    if (width > 0 && height > 0) void fitView({ padding: 0.15, maxZoom: 1.2 });
  }, [width, height, fitView]);
  return null;
}

export function Dag(props: {
  pipeline: PipelineDoc;
  states?: Record<string, NodeRecord>;
  selected?: string | null;
  onSelect?: (id: string | null) => void;
}) {
  const [laid, setLaid] = useState<Layout | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const shape = JSON.stringify([props.pipeline.nodes.map((n) => [n.id, n.foreach !== undefined || n.loop !== undefined || n.replicas !== undefined]), props.pipeline.edges, props.pipeline.on_failure]);
  useEffect(() => {
    let live = true;
    layout(props.pipeline)
      .then((l) => live && setLaid(l))
      .catch((err: Error) => live && setProblem(`layout failed: ${err.message}`));
    return () => {
      live = false;
    };
    // the layout depends on the graph's shape only, not on the states
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape]);

  const fns = useMemo(() => new Map(props.pipeline.nodes.map((n) => [n.id, n])), [props.pipeline]);
  const nodes: Node<KnodeData>[] = useMemo(
    () =>
      (laid?.nodes ?? []).map((n) => {
        const def = fns.get(n.id);
        return {
          id: n.id,
          type: "knode",
          position: { x: n.x, y: n.y },
          width: n.width,
          height: n.height,
          draggable: false,
          connectable: false,
          data: {
            id: n.id,
            fn: def?.function ?? (props.pipeline.on_failure ? `${props.pipeline.on_failure} (on failure)` : "?"),
            state: props.states?.[n.id],
            fanout: def ? def.foreach !== undefined || def.loop !== undefined || def.replicas !== undefined : false,
            selected: props.selected === n.id,
          },
        };
      }),
    [laid, fns, props.states, props.selected, props.pipeline.on_failure],
  );
  const edges: Edge[] = useMemo(
    () =>
      (laid?.edges ?? []).map((e) => {
        const source = props.states?.[e.source]?.status;
        const active = source === "succeeded";
        return {
          id: e.id,
          source: e.source,
          target: e.target,
          label: e.label,
          animated: props.states?.[e.target]?.status === "running",
          className: active ? "edge-done" : "edge",
        };
      }),
    [laid, props.states],
  );
  if (problem) return <div className="problem">{problem}</div>;
  if (!laid) return <div className="dag muted center">laying out…</div>;
  return (
    <div className="dag" data-testid="dag">
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        fitView
        fitViewOptions={{ padding: 0.15, maxZoom: 1.2 }}
        minZoom={0.1}
        nodesDraggable={false}
        nodesConnectable={false}
        elementsSelectable={false}
        proOptions={{ hideAttribution: true }}
        onNodeClick={(_, n) => props.onSelect?.(n.id === props.selected ? null : n.id)}
        onPaneClick={() => props.onSelect?.(null)}
      >
        <Background gap={20} size={1} />
        <Controls showInteractive={false} />
        <FitOnResize />
      </ReactFlow>
    </div>
  );
}
