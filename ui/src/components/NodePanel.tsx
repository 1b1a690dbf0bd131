import { useState } from "react";
import type { Attempt, NodeRecord, NodeView, RunRecord } from "../types";
import { useSession } from "../session";
import { useGet } from "../live";
import { NODE_FINAL, isFanout, progressOf, progressText } from "../states";
import { clock, duration, json, ms, traceback } from "../format";
import { queuedAt } from "../waterfall";
import { JsonView, Problem, Status, Tabs } from "./Bits";
import { ItemList } from "./ItemList";
import { Logs } from "./Logs";

function attemptsOf(node: NodeRecord): Attempt[] {
  const current: Attempt = {
    attempt: node.attempt,
    status: node.status,
    error: node.error,
    queued_at: queuedAt(node) ?? null,
    started_at: node.started_at ?? null,
    finished_at: node.finished_at ?? null,
    duration_ms: node.duration_ms ?? null,
    queue_ms: node.queue_ms ?? null,
  };
  return [...(node.attempts ?? []), ...(node.attempt > 0 ? [current] : [])];
}

function ErrorBlock({ error }: { error: NodeRecord["error"] }) {
  if (!error) return null;
  const tb = traceback(error.detail);
  return (
    <div className="error-block" data-testid="node-error">
      <div><b>{error.type}</b>: <span data-testid="error-message">{error.message}</span></div>
      {error.http_status ? <div className="muted">last delivery: HTTP {error.http_status}</div> : null}
      {tb && <pre className="traceback" data-testid="traceback">{tb}</pre>}
      {!tb && error.detail != null && <pre className="json">{json(error.detail)}</pre>}
    </div>
  );
}

export function NodePanel({ run, nodeId, onClose }: { run: RunRecord; nodeId: string; onClose: () => void }) {
  const { api } = useSession();
  const node = run.nodes[nodeId];
  const [item, setItem] = useState<number | null>(null);
  const [tab, setTab] = useState("overview");
  const key = item === null ? nodeId : `${nodeId}[${item}]`;
  const view = useGet<NodeView>(api, `/runs/${encodeURIComponent(run.id)}/nodes/${encodeURIComponent(key)}`, { v: `${node?.status}:${node?.attempt}:${node && isFanout(node) ? progressText(progressOf(node)) : ""}` });
  // a fan-out node's items: the run stream's record has its counters only, the node view lists them
  const fanPath = item !== null && node && !node.items ? `/runs/${encodeURIComponent(run.id)}/nodes/${encodeURIComponent(nodeId)}` : null;
  const fanView = useGet<NodeView>(api, fanPath, { v: `${node?.status}:${node?.attempt}:${node && isFanout(node) ? progressText(progressOf(node)) : ""}` });
  if (!node) return null;
  const fan = isFanout(node);
  const items = node.items ?? (item === null ? view.data?.items : fanView.data?.items);
  const subject = item !== null && items ? items[item] : node;
  const attempts = item === null ? attemptsOf(node) : [];
  const logNode = key;
  const attemptNo = item !== null && items ? items[item].attempt : node.attempt;
  return (
    <aside className="panel" data-testid="node-panel">
      <div className="panel-head">
        <h2 className="mono">{key}</h2>
        <Status status={subject?.status ?? "pending"} />
        <span className="spacer" />
        <button className="ghost" onClick={onClose} title="Close (Esc)">✕</button>
      </div>
      <div className="muted">{view.data?.function ?? ""} · attempt {attemptNo}{fan ? ` · ${progressText(progressOf(node))}` : ""}</div>
      <Tabs
        tabs={[["overview", "Overview"], ...(fan ? ([["items", `Items (${node.progress?.total ?? items?.length ?? 0})`]] as [string, string][]) : []), ["logs", "Logs"], ["attempts", "Attempts"]]}
        active={tab}
        onChange={setTab}
      />
      {tab === "overview" && (
        <div className="panel-body">
          {item !== null && <button className="ghost small" onClick={() => setItem(null)}>← the whole node</button>}
          <ErrorBlock error={subject?.error ?? null} />
          <h3>Inputs</h3>
          <Problem error={view.error} />
          {view.data && (view.data.inputs_error ? <p className="muted">{view.data.inputs_error}</p> : <JsonView value={view.data.inputs} />)}
          <h3>Output</h3>
          {item === null ? <JsonView value={node.output ?? (view.data?.state as { output?: unknown })?.output} /> : <JsonView value={Array.isArray(node.output) ? node.output[item] : (view.data?.state as { output?: unknown })?.output} />}
          <h3>Timing</h3>
          <Timing state={(view.data?.state as NodeRecord | undefined) ?? node} />
        </div>
      )}
      {tab === "items" && items && (
        <ItemList
          items={items}
          selected={item}
          onSelect={(i) => {
            setItem(i);
            setTab("overview");
          }}
        />
      )}
      {tab === "logs" && (
        <Logs api={api} runId={run.id} node={logNode} attempt={Math.max(1, attemptNo)} live={!NODE_FINAL.has(subject?.status ?? "pending")} />
      )}
      {tab === "attempts" && (
        <table className="grid small" data-testid="attempts">
          <thead><tr><th>#</th><th>status</th><th>queued</th><th>queue</th><th>started</th><th>run</th><th>error</th></tr></thead>
          <tbody>
            {attempts.map((a) => (
              <tr key={`${a.attempt}-${a.started_at}`}>
                <td>{a.attempt}</td>
                <td><Status status={a.status} /></td>
                <td className="mono">{clock(a.queued_at).slice(11)}</td>
                <td>{duration(a.queue_ms ?? ms(a.queued_at, a.started_at))}</td>
                <td className="mono">{clock(a.started_at).slice(11)}</td>
                <td>{duration(a.duration_ms ?? ms(a.started_at, a.finished_at))}</td>
                <td className="err">{a.error?.message ?? ""}</td>
              </tr>
            ))}
            {attempts.length === 0 && <tr><td colSpan={7} className="muted">not started</td></tr>}
          </tbody>
        </table>
      )}
    </aside>
  );
}

function Timing({ state }: { state: NodeRecord }) {
  const q = queuedAt(state);
  return (
    <table className="plain small">
      <tbody>
        <tr><td>queued</td><td className="mono">{clock(q)}</td></tr>
        <tr><td>started</td><td className="mono">{clock(state.started_at)}</td></tr>
        <tr><td>finished</td><td className="mono">{clock(state.finished_at)}</td></tr>
        <tr><td>queue time</td><td>{duration(state.queue_ms ?? ms(q, state.started_at))}</td></tr>
        <tr><td>run time</td><td>{duration(state.duration_ms ?? ms(state.started_at, state.finished_at))}</td></tr>
      </tbody>
    </table>
  );
}
