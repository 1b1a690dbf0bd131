import { useEffect, useState } from "react";
import { useSession } from "../session";
import { useGet } from "../live";
import { Link, Problem, Status } from "../components/Bits";
import { ago } from "../format";
import type { Counts, PipelineDoc, RunSummary, Trigger } from "../types";

export function triggersOf(p: PipelineDoc): Trigger[] {
  return p.triggers ?? (p.trigger ? [p.trigger] : [{ type: "manual" }]);
}

export function PipelinesPage() {
  const { api, can } = useSession();
  const pipelines = useGet<PipelineDoc[]>(api, "/pipelines");
  const day = useGet<Counts>(api, "/runs/counts", { since: "24h" }, 10_000);
  const [last, setLast] = useState<Record<string, RunSummary | null>>({});
  useEffect(() => {
    let live = true;
    for (const p of pipelines.data ?? []) {
      const name = p.metadata.name;
      api
        .get<RunSummary[]>("/runs", { pipeline: name, limit: 1, view: "summary" })
        .then((runs) => live && setLast((old) => ({ ...old, [name]: runs[0] ?? null })))
        .catch(() => undefined);
    }
    return () => {
      live = false;
    };
  }, [api, pipelines.data]);
  return (
    <div className="page">
      <div className="run-head">
        <h1>Pipelines</h1>
        <span className="spacer" />
        {can("admin") && <Link to="/pipelines/new" className="button" >New pipeline</Link>}
      </div>
      <Problem error={pipelines.error} />
      <table className="grid" data-testid="pipelines">
        <thead><tr><th>pipeline</th><th>trigger</th><th>nodes</th><th>last run</th><th>runs in 24 h</th></tr></thead>
        <tbody>
          {(pipelines.data ?? []).map((p) => {
            const name = p.metadata.name;
            const counts = day.data?.pipelines[name] ?? {};
            const total = Object.values(counts).reduce((a, b) => a + b, 0);
            const run = last[name];
            return (
              <tr key={name} data-testid="pipeline-row">
                <td><Link to={`/pipelines/${encodeURIComponent(name)}`}>{name}</Link>{p.metadata.description && <div className="muted small">{p.metadata.description}</div>}</td>
                <td>{triggersOf(p).map((t) => t.type + (t.auth ? ` (${t.auth.scheme})` : "")).join(", ")}</td>
                <td>{p.nodes.length}</td>
                <td>{run ? <><Status status={run.status} /> <Link to={`/runs/${run.id}`} className="small">{ago(run.created_at)}</Link></> : run === null ? <span className="muted">never</span> : "…"}</td>
                <td>{total}{counts.failed ? <span className="err small"> ({counts.failed} failed)</span> : null}</td>
              </tr>
            );
          })}
          {pipelines.data?.length === 0 && <tr><td colSpan={5} className="muted">No pipelines: `knflow dev PIPELINE.yaml` or PUT /pipelines/NAME adds one.</td></tr>}
        </tbody>
      </table>
    </div>
  );
}
