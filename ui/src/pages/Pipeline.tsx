import { useMemo, useState } from "react";
import { useSession } from "../session";
import { useGet } from "../live";
import { Copy, Link, Problem, Status, Tabs } from "../components/Bits";
import { Dag } from "../components/Dag";
import { ago, clock, duration, json, ms } from "../format";
import { curlExample } from "../webhook";
import { checkTriggerData, fieldValue } from "../check";
import { navigate } from "../nav";
import type { PipelineDetails, RunSummary, Trigger } from "../types";

export function PipelinePage({ name }: { name: string }) {
  const { api, can } = useSession();
  const details = useGet<PipelineDetails>(api, `/pipelines/${encodeURIComponent(name)}/details`);
  const runs = useGet<RunSummary[]>(api, "/runs", { pipeline: name, limit: 10, view: "summary" }, 3000);
  const [tab, setTab] = useState("dag");
  if (details.error) return <div className="page"><Problem error={details.error} /></div>;
  if (!details.data) return <div className="page muted">loading {name}…</div>;
  const d = details.data;
  return (
    <div className="page">
      <div className="run-head">
        <h1>{name}</h1>
        {d.pipeline.metadata.description && <span className="muted">{d.pipeline.metadata.description}</span>}
        <span className="spacer" />
        <Link to={`/runs?pipeline=${encodeURIComponent(name)}`}>all runs →</Link>
        <Link to={`/pipelines/${encodeURIComponent(name)}/edit`} className="button">{can("admin") ? "Edit" : "Open in the editor"}</Link>
      </div>
      <div className="two">
        <div className="grow">
          <Tabs tabs={[["dag", "DAG"], ["yaml", "YAML"]]} active={tab} onChange={setTab} />
          {tab === "dag" ? <Dag pipeline={d.pipeline} /> : <pre className="yaml" data-testid="yaml">{d.yaml}</pre>}
          <h2>Recent runs</h2>
          <table className="grid small">
            <tbody>
              {(runs.data ?? []).map((r) => (
                <tr key={r.id}>
                  <td><Link to={`/runs/${r.id}`} className="mono">{r.id}</Link></td>
                  <td><Status status={r.status} /></td>
                  <td title={clock(r.created_at)}>{ago(r.created_at)}</td>
                  <td>{r.finished_at ? duration(ms(r.created_at, r.finished_at)) : "…"}</td>
                </tr>
              ))}
              {runs.data?.length === 0 && <tr><td className="muted">no runs yet</td></tr>}
            </tbody>
          </table>
        </div>
        <div className="side">
          <h2>Triggers</h2>
          {d.triggers.map((t, i) => <TriggerCard key={i} name={name} trigger={t} details={d} />)}
          <RunForm name={name} details={d} />
        </div>
      </div>
    </div>
  );
}

function sample(details: PipelineDetails): string {
  const data: Record<string, unknown> = {};
  for (const f of details.inputs) data[f.name] = "";
  return JSON.stringify(data);
}

function TriggerCard({ name, trigger, details }: { name: string; trigger: Trigger; details: PipelineDetails }) {
  const origin = window.location.origin;
  return (
    <div className="card" data-testid={`trigger-${trigger.type}`}>
      <h3>{trigger.type}</h3>
      {trigger.type === "webhook" && (() => {
        const curl = curlExample(origin, name, trigger, sample(details));
        return (
          <>
            <div><span className="muted">URL</span> <code data-testid="webhook-url">{origin}{trigger.path}</code> <Copy text={`${origin}${trigger.path}`} /></div>
            <div className="muted small">{trigger.auth ? `signed: ${trigger.auth.scheme}, secret in the router's ${trigger.auth.secret_env}` : "no signature: a token of scope run"}</div>
            <div className="row"><span className="muted">curl</span><span className="spacer" /><Copy text={curl} label="Copy curl" /></div>
            <pre className="code" data-testid="curl">{curl}</pre>
          </>
        );
      })()}
      {trigger.type === "cloudevent" && (
        <>
          <div className="muted small">Runs for each CloudEvent (POST /events, or Knative's broker) whose attributes are all these:</div>
          <pre className="code">{json(trigger.filter ?? {})}</pre>
        </>
      )}
      {trigger.type === "cron" && (
        <>
          <div><span className="muted">schedule</span> <code>{trigger.schedule}</code> {trigger.timezone ?? "UTC"}</div>
          <div><span className="muted">next</span> <span data-testid="next-fire">{clock(trigger.next_at)}</span></div>
          {trigger.data !== undefined && <pre className="code">{json(trigger.data)}</pre>}
        </>
      )}
      {trigger.type === "manual" && <div className="muted small">Started by hand: the form below, `knflow run`, or the API.</div>}
    </div>
  );
}

function RunForm({ name, details }: { name: string; details: PipelineDetails }) {
  const { api, can } = useSession();
  const [values, setValues] = useState<Record<string, string>>({});
  const [raw, setRaw] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const text = useMemo(() => raw ?? JSON.stringify(Object.fromEntries(details.inputs.map((f) => [f.name, fieldValue(values[f.name] ?? "")])), null, 2), [raw, values, details.inputs]);
  const checked = checkTriggerData(text, details.inputs);
  if (!can("run")) return null;
  const start = async () => {
    if (!checked.ok) return;
    setBusy(true);
    setError(null);
    try {
      const answer = await api.post<{ run: string }>(`/pipelines/${encodeURIComponent(name)}/runs`, checked.value);
      navigate(`/runs/${answer.run}`);
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="card" data-testid="run-form">
      <h3>Start a run</h3>
      {raw === null && details.inputs.map((f) => (
        <label key={f.name} className="field">
          <span>{f.name} <span className="muted small">read by {f.nodes.join(", ")}</span></span>
          <input value={values[f.name] ?? ""} onChange={(e) => setValues({ ...values, [f.name]: e.target.value })} data-testid={`input-${f.name}`} />
        </label>
      ))}
      {raw === null && details.inputs.length === 0 && <p className="muted small">Its templates read no trigger data.</p>}
      {raw !== null && <textarea className="json-editor" rows={8} value={raw} onChange={(e) => setRaw(e.target.value)} spellCheck={false} />}
      {!checked.ok && <ul className="problems">{checked.problems.map((p) => <li key={p}>{p}</li>)}</ul>}
      <Problem error={error} />
      <div className="actions">
        <button className="ghost small" onClick={() => setRaw(raw === null ? text : null)}>{raw === null ? "Edit as JSON" : "Back to the form"}</button>
        <button className="primary" disabled={!checked.ok || busy} onClick={() => void start()} data-testid="start-run">Start run</button>
      </div>
    </div>
  );
}
