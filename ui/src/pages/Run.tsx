import { useEffect, useMemo, useState } from "react";
import { useSession } from "../session";
import { useGet, useRun } from "../live";
import { Confirm, JsonView, Link, Problem, Status, Tabs } from "../components/Bits";
import { Dag } from "../components/Dag";
import { NodePanel } from "../components/NodePanel";
import { Waterfall } from "../components/Waterfall";
import { useShortcuts } from "../components/Shortcuts";
import { ago, clock, duration, json, ms } from "../format";
import { checkTriggerData } from "../check";
import { navigate } from "../nav";
import { ON_FAILURE } from "../layout";
import { isFanout } from "../states";
import type { PipelineDetails, PipelineDoc, RunRecord } from "../types";

type Action = "redrive" | "from" | "rerun" | "cancel" | null;

/** The pipeline as the DAG draws it, with any node the run has that the pipeline no longer does. */
export function dagOf(pipeline: PipelineDoc | null, run: RunRecord): PipelineDoc {
  const nodes = pipeline?.nodes ?? [];
  const known = new Set(nodes.map((n) => n.id));
  const extra = Object.keys(run.nodes)
    .filter((id) => !known.has(id) && id !== ON_FAILURE)
    .map((id) => ({ id, function: "?", ...(isFanout(run.nodes[id]) ? { foreach: "" } : {}) }));
  return {
    metadata: { name: run.pipeline },
    nodes: [...nodes, ...extra],
    edges: pipeline?.edges ?? [],
    on_failure: ON_FAILURE in run.nodes ? (pipeline?.on_failure ?? "on-failure") : undefined,
  };
}

export function RunPage({ runId, node }: { runId: string; node?: string }) {
  const { api, can } = useSession();
  const { run, error, mode, restart } = useRun(api, runId);
  const details = useGet<PipelineDetails>(api, run ? `/pipelines/${encodeURIComponent(run.pipeline)}/details` : null);
  const [selected, setSelected] = useState<string | null>(node ?? null);
  const [tab, setTab] = useState("waterfall");
  const [action, setAction] = useState<Action>(null);
  useShortcuts({ Escape: () => setSelected(null) });
  useEffect(() => setSelected(node ?? null), [runId, node]);

  const dag = useMemo(() => (run ? dagOf(details.data?.pipeline ?? null, run) : null), [run, details.data]);
  if (error && !run) return <div className="page"><Problem error={error} /></div>;
  if (!run || !dag) return <div className="page muted">loading run {runId}…</div>;
  const order = [...dag.nodes.map((n) => n.id), ...(dag.on_failure ? [ON_FAILURE] : [])];
  const running = run.status === "running";
  const operate = can("operate");
  return (
    <div className="page run-page">
      <div className="run-head">
        <h1 className="mono" data-testid="run-id">{run.id}</h1>
        <span data-testid="run-status"><Status status={run.status} /></span>
        <Link to={`/pipelines/${encodeURIComponent(run.pipeline)}`}>{run.pipeline}</Link>
        <span className="muted" title={clock(run.created_at)}>started {ago(run.created_at)}</span>
        <span className="muted">{run.finished_at ? `took ${duration(ms(run.created_at, run.finished_at))}` : "running"}</span>
        {run.replay_of && <span>replay of <Link to={`/runs/${run.replay_of}`} className="mono">{run.replay_of}</Link></span>}
        <span className={`live live-${mode}`} data-testid="live-mode">{mode === "stream" ? "● live" : mode === "polling" ? "◌ polling" : ""}</span>
        <span className="spacer" />
        {operate && (
          <div className="actions" data-testid="run-actions">
            {!running && <button onClick={() => setAction("redrive")} data-testid="redrive">Redrive</button>}
            {!running && <button onClick={() => setAction("from")} data-testid="rerun-from">Re-run from…</button>}
            <button onClick={() => setAction("rerun")} data-testid="replay-new">Replay as new run</button>
            {running && <button className="danger" onClick={() => setAction("cancel")} data-testid="cancel">Cancel</button>}
          </div>
        )}
      </div>
      {run.error && (
        <div className="problem">
          <b>{run.error.type}</b>{run.error.node ? ` in ${run.error.node}` : ""}: {run.error.message}
        </div>
      )}
      <div className="run-body">
        <div className="run-main">
          <Dag pipeline={dag} states={run.nodes} selected={selected} onSelect={setSelected} />
          <Tabs tabs={[["waterfall", "Waterfall"], ["trigger", "Trigger event"], ["history", `Replay history (${run.replays.length})`]]} active={tab} onChange={setTab} />
          <div className="tab-body">
            {tab === "waterfall" && <Waterfall run={run} order={order} />}
            {tab === "trigger" && <JsonView value={run.trigger} />}
            {tab === "history" && <History run={run} />}
          </div>
        </div>
        {selected && run.nodes[selected] && <NodePanel key={selected} run={run} nodeId={selected} onClose={() => setSelected(null)} />}
      </div>
      {action && (
        <ActionDialog
          action={action}
          run={run}
          details={details.data}
          node={selected}
          onClose={() => setAction(null)}
          onDone={() => restart()}
        />
      )}
    </div>
  );
}

function History({ run }: { run: RunRecord }) {
  if (run.replays.length === 0 && !run.replay_of) return <p className="muted">Never replayed.</p>;
  return (
    <table className="grid small" data-testid="history">
      <thead><tr><th>when</th><th>what</th><th>by</th><th>details</th></tr></thead>
      <tbody>
        {run.replays.map((r, i) => (
          <tr key={i} data-testid="history-row">
            <td className="mono">{clock(r.at)}</td>
            <td>{r.kind === "redrive" ? (r.from ? `re-run from ${r.from}` : "redrive") : r.edited ? "re-run with edited data" : "re-run"}</td>
            <td>{r.by ?? "–"}</td>
            <td>
              {r.kind === "redrive" && <>was {r.previous_status}; reset {r.reset?.join(", ")}{r.items?.length ? ` (${r.items.length} items)` : ""}</>}
              {r.kind === "rerun" && r.of && <>of <Link to={`/runs/${r.of}`} className="mono">{r.of}</Link></>}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function ActionDialog(props: {
  action: Exclude<Action, null>;
  run: RunRecord;
  details: PipelineDetails | null;
  node: string | null;
  onClose: () => void;
  onDone: () => void;
}) {
  const { api } = useSession();
  const { run } = props;
  const nodes = Object.keys(run.nodes);
  const [from, setFrom] = useState(props.node ?? nodes[0]);
  const [text, setText] = useState(() => json((run.trigger as { data?: unknown }).data ?? {}));
  const inputs = props.details?.inputs ?? [];
  const checked = checkTriggerData(text, inputs);
  const path = `/runs/${encodeURIComponent(run.id)}`;
  const after = (answer: unknown) => {
    props.onDone();
    return answer;
  };
  if (props.action === "cancel") {
    return (
      <Confirm title={`Cancel run ${run.id}?`} confirm="Cancel the run" danger onClose={props.onClose} onConfirm={() => api.post(`${path}/cancel`).then(after)} describe={(r) => <>Run is now <Status status={(r as RunRecord).status} />.</>}>
        <p>Nodes not started yet are cancelled; nodes in flight finish, and their results are recorded without moving the run.</p>
      </Confirm>
    );
  }
  if (props.action === "redrive") {
    return (
      <Confirm title={`Redrive run ${run.id}?`} confirm="Redrive" onClose={props.onClose} onConfirm={() => api.post(`${path}/replay`, {}).then(after)} describe={(r) => <>Redriven: the run is <Status status={(r as RunRecord).status} />.</>}>
        <p>Failed, cancelled and unfinished nodes, and everything downstream of them, run again in this run; succeeded nodes keep their outputs.</p>
      </Confirm>
    );
  }
  if (props.action === "from") {
    return (
      <Confirm title="Re-run from a node" confirm={`Re-run from ${from}`} onClose={props.onClose} onConfirm={() => api.post(`${path}/replay`, { from }).then(after)} describe={(r) => <>Re-running from {from}: the run is <Status status={(r as RunRecord).status} />.</>}>
        <p>This node and everything downstream of it run again in this run, even those that succeeded.</p>
        <select value={from} onChange={(e) => setFrom(e.target.value)} data-testid="from-node">
          {nodes.map((n) => <option key={n} value={n}>{n}</option>)}
        </select>
      </Confirm>
    );
  }
  return (
    <Confirm
      title="Replay as a new run"
      confirm={checked.ok ? "Start the new run" : "Fix the data first"}
      onClose={props.onClose}
      onConfirm={() => {
        if (!checked.ok) return Promise.reject(new Error(checked.problems.join("; ")));
        return api.post<RunRecord>(`${path}/replay`, { new_run: true, data: checked.value });
      }}
      describe={(r) => (
        <>New run <Link to={`/runs/${(r as RunRecord).id}`} className="mono">{(r as RunRecord).id}</Link> started. <button className="ghost small" onClick={() => { props.onClose(); navigate(`/runs/${(r as RunRecord).id}`); }}>Open it</button></>
      )}
    >
      <p>A new run of {run.pipeline} from this run's trigger event, with its data as edited here (linked by replay_of).</p>
      <textarea className="json-editor" value={text} onChange={(e) => setText(e.target.value)} spellCheck={false} rows={12} data-testid="json-editor" />
      {!checked.ok && <ul className="problems">{checked.problems.map((p) => <li key={p}>{p}</li>)}</ul>}
      {checked.ok && inputs.length > 0 && <p className="muted">✓ has {inputs.map((i) => i.name).join(", ")}, which the pipeline reads</p>}
    </Confirm>
  );
}
