import { useEffect, useMemo, useRef, useState } from "react";
import { useSession } from "../session";
import { useGet, useRunsList } from "../live";
import { Confirm, Link, Problem, Status } from "../components/Bits";
import { useShortcuts } from "../components/Shortcuts";
import { ago, clock, duration, ms } from "../format";
import { navigate } from "../nav";
import { ApiError } from "../api";
import type { PipelineDoc, RunRecord, RunSummary } from "../types";

export const PAGE_SIZE = 50;
const STATUSES = ["running", "succeeded", "failed", "cancelled"];
const WINDOWS: [string, string][] = [["", "any time"], ["15m", "last 15 min"], ["1h", "last hour"], ["24h", "last 24 h"], ["7d", "last 7 days"]];
const TRIGGERS: [string, string][] = [
  ["", "any trigger"],
  ["dev.knflow.webhook", "webhook"],
  ["dev.knflow.manual", "started by hand"],
  ["dev.knative.sources.ping", "cron"],
];

type Bulk = { kind: "redrive" | "rerun" | "cancel"; ids: string[] } | { kind: "matching" } | null;

function setQuery(changes: Record<string, string>) {
  const q = new URLSearchParams(window.location.search);
  for (const [k, v] of Object.entries(changes)) {
    if (v) q.set(k, v);
    else q.delete(k);
  }
  if (!("page" in changes)) q.delete("page");
  const text = q.toString();
  navigate(`/runs${text ? `?${text}` : ""}`, true);
}

export function RunsPage({ query }: { query: URLSearchParams }) {
  const { api, can } = useSession();
  const pipeline = query.get("pipeline") ?? "";
  const status = query.get("status") ?? "";
  const since = query.get("since") ?? "";
  const trigger = query.get("trigger") ?? "";
  const page = Math.max(0, Number(query.get("page") ?? 0) || 0);
  const live = !since && !trigger && page === 0;
  const listQuery = { pipeline, status, since, trigger, limit: PAGE_SIZE, offset: page * PAGE_SIZE };
  const { runs, counts, error, mode } = useRunsList(api, listQuery, live);
  const pipelines = useGet<PipelineDoc[]>(api, "/pipelines");
  const [picked, setPicked] = useState<Set<string>>(new Set());
  const [cursor, setCursor] = useState(0);
  const [search, setSearch] = useState("");
  const [searchError, setSearchError] = useState<string | null>(null);
  const [bulk, setBulk] = useState<Bulk>(null);
  const searchBox = useRef<HTMLInputElement>(null);
  useEffect(() => setPicked(new Set()), [pipeline, status, since, trigger, page]);

  const list = runs ?? [];
  useShortcuts({
    "/": () => searchBox.current?.focus(),
    j: () => setCursor((c) => Math.min(list.length - 1, c + 1)),
    k: () => setCursor((c) => Math.max(0, c - 1)),
    Enter: () => list[cursor] && navigate(`/runs/${list[cursor].id}`),
    x: () => list[cursor] && toggle(list[cursor].id),
  });
  const toggle = (id: string) =>
    setPicked((old) => {
      const next = new Set(old);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });
  const find = async () => {
    const id = search.trim();
    if (!id) return;
    try {
      await api.get(`/runs/${encodeURIComponent(id)}`);
      navigate(`/runs/${encodeURIComponent(id)}`);
    } catch (err) {
      setSearchError(err instanceof ApiError && err.status === 404 ? `no run has the id '${id}'` : (err as Error).message);
    }
  };
  const chosen = useMemo(() => list.filter((r) => picked.has(r.id)), [list, picked]);
  const operate = can("operate");

  return (
    <div className="page">
      <div className="counts" data-testid="counts">
        <span className="muted">last hour</span>
        {STATUSES.map((s) => (
          <button key={s} className={`count st-${s}${status === s ? " on" : ""}`} onClick={() => setQuery({ status: status === s ? "" : s })} data-testid={`count-${s}`}>
            <b>{counts?.statuses[s] ?? 0}</b> {s}
          </button>
        ))}
        <span className="spacer" />
        <span className={`live live-${mode}`}>{live ? (mode === "stream" ? "● live" : "◌ polling") : "◌ refreshing every 2 s"}</span>
      </div>
      <div className="filters">
        <select value={pipeline} onChange={(e) => setQuery({ pipeline: e.target.value })} aria-label="pipeline" data-testid="filter-pipeline">
          <option value="">every pipeline</option>
          {(pipelines.data ?? []).map((p) => <option key={p.metadata.name} value={p.metadata.name}>{p.metadata.name}</option>)}
        </select>
        <select value={status} onChange={(e) => setQuery({ status: e.target.value })} aria-label="status" data-testid="filter-status">
          <option value="">any status</option>
          {STATUSES.map((s) => <option key={s} value={s}>{s}</option>)}
        </select>
        <select value={since} onChange={(e) => setQuery({ since: e.target.value })} aria-label="time range">
          {WINDOWS.map(([v, l]) => <option key={v} value={v}>{l}</option>)}
        </select>
        <select value={trigger} onChange={(e) => setQuery({ trigger: e.target.value })} aria-label="trigger">
          {TRIGGERS.map(([v, l]) => <option key={v} value={v}>{l}</option>)}
          {trigger && !TRIGGERS.some(([v]) => v === trigger) && <option value={trigger}>{trigger}</option>}
        </select>
        <form className="search" onSubmit={(e) => { e.preventDefault(); void find(); }}>
          <input ref={searchBox} placeholder="run id  (/)" value={search} onChange={(e) => { setSearch(e.target.value); setSearchError(null); }} data-testid="search" />
        </form>
        {searchError && <span className="err">{searchError}</span>}
        <span className="spacer" />
        {operate && picked.size > 0 && (
          <span className="actions" data-testid="bulk-actions">
            <span className="muted">{picked.size} selected</span>
            <button onClick={() => setBulk({ kind: "redrive", ids: chosen.filter((r) => r.status !== "running").map((r) => r.id) })}>Redrive</button>
            <button onClick={() => setBulk({ kind: "rerun", ids: chosen.map((r) => r.id) })}>Re-run</button>
            <button className="danger" onClick={() => setBulk({ kind: "cancel", ids: chosen.filter((r) => r.status === "running").map((r) => r.id) })}>Cancel</button>
          </span>
        )}
        {operate && picked.size === 0 && (status === "failed" || status === "cancelled") && (
          <button onClick={() => setBulk({ kind: "matching" })} data-testid="bulk-matching">Redrive all {status}{pipeline ? ` of ${pipeline}` : ""}{since ? ` (${since})` : ""}</button>
        )}
      </div>
      <Problem error={error} />
      <table className="grid runs" data-testid="runs">
        <thead>
          <tr>
            {operate && <th className="check"><input type="checkbox" aria-label="select all" checked={list.length > 0 && picked.size === list.length} onChange={(e) => setPicked(e.target.checked ? new Set(list.map((r) => r.id)) : new Set())} /></th>}
            <th>run</th><th>pipeline</th><th>status</th><th>nodes</th><th>trigger</th><th>started</th><th>took</th>
          </tr>
        </thead>
        <tbody>
          {list.map((r, i) => (
            <RunRow key={r.id} run={r} cursor={i === cursor} picked={picked.has(r.id)} toggle={operate ? () => toggle(r.id) : null} />
          ))}
          {runs && list.length === 0 && <tr><td colSpan={8} className="muted center">No runs match.</td></tr>}
          {!runs && <tr><td colSpan={8} className="muted center">loading…</td></tr>}
        </tbody>
      </table>
      <div className="pager">
        <button className="ghost" disabled={page === 0} onClick={() => setQuery({ page: page > 1 ? String(page - 1) : "" })}>← newer</button>
        <span className="muted">page {page + 1}</span>
        <button className="ghost" disabled={list.length < PAGE_SIZE} onClick={() => setQuery({ page: String(page + 1) })} data-testid="older">older →</button>
      </div>
      {bulk && <BulkDialog bulk={bulk} filters={{ pipeline, status, since }} onClose={() => { setBulk(null); setPicked(new Set()); }} />}
    </div>
  );
}

function RunRow({ run, cursor, picked, toggle }: { run: RunSummary; cursor: boolean; picked: boolean; toggle: (() => void) | null }) {
  const total = Object.values(run.nodes).reduce((a, b) => a + b, 0);
  const items = Object.values(run.items).reduce((a, b) => a + b, 0);
  return (
    <tr className={cursor ? "cursor" : ""} data-testid="run-row" data-run={run.id} data-status={run.status}>
      {toggle && <td className="check"><input type="checkbox" checked={picked} onChange={toggle} aria-label={`select ${run.id}`} /></td>}
      <td><Link to={`/runs/${run.id}`} className="mono">{run.id}</Link>{run.replay_of && <span className="muted" title={`replay of ${run.replay_of}`}> ↻</span>}</td>
      <td>{run.pipeline}</td>
      <td><Status status={run.status} />{run.error && <div className="err small" title={run.error.message}>{run.error.message.slice(0, 60)}</div>}</td>
      <td className="small">
        <span className="nodebar">
          {Object.entries(run.nodes).map(([s, n]) => <span key={s} className={`st-${s}`} style={{ flexGrow: n }} title={`${n} ${s}`} />)}
        </span>
        <span className="muted">{run.nodes.succeeded ?? 0}/{total}{items ? ` · ${run.items.succeeded ?? 0}/${items} items` : ""}</span>
      </td>
      <td className="small muted">{(run.trigger.type ?? "").replace(/^dev\.knflow\./, "")}</td>
      <td className="small" title={clock(run.created_at)}>{ago(run.created_at)}</td>
      <td className="small">{run.finished_at ? duration(ms(run.created_at, run.finished_at)) : "…"}</td>
    </tr>
  );
}

function BulkDialog({ bulk, filters, onClose }: { bulk: Exclude<Bulk, null>; filters: { pipeline: string; status: string; since: string }; onClose: () => void }) {
  const { api } = useSession();
  if (bulk.kind === "matching") {
    const body = { pipeline: filters.pipeline || undefined, status: filters.status, since: filters.since || undefined };
    return (
      <Confirm title="Redrive every matching run" confirm="Redrive them" onClose={onClose} onConfirm={() => api.post<{ runs: unknown[] }>("/replay", body)} describe={(r) => <BulkReport report={(r as { runs: Report[] }).runs} />}>
        <p>Every {filters.status} run{filters.pipeline ? ` of ${filters.pipeline}` : ""}{filters.since ? ` of the last ${filters.since}` : ""} is redriven in place (POST /replay, at most 1,000).</p>
      </Confirm>
    );
  }
  const verb = bulk.kind === "cancel" ? "Cancel" : bulk.kind === "rerun" ? "Re-run" : "Redrive";
  const go = async () => {
    const report: Report[] = [];
    for (const id of bulk.ids) {
      try {
        const path = `/runs/${encodeURIComponent(id)}/${bulk.kind === "cancel" ? "cancel" : "replay"}`;
        const done = await api.post<RunRecord>(path, bulk.kind === "rerun" ? { new_run: true } : {});
        report.push({ run: id, replay: done.id, status: done.status });
      } catch (err) {
        report.push({ run: id, error: (err as Error).message });
      }
    }
    return report;
  };
  return (
    <Confirm title={`${verb} ${bulk.ids.length} run${bulk.ids.length === 1 ? "" : "s"}?`} confirm={verb} danger={bulk.kind === "cancel"} onClose={onClose} onConfirm={go} describe={(r) => <BulkReport report={r as Report[]} />}>
      {bulk.ids.length === 0 ? <p>None of the selected runs can be {verb.toLowerCase()}ed in their state.</p> : <p className="mono small">{bulk.ids.join(" ")}</p>}
    </Confirm>
  );
}

interface Report {
  run: string;
  replay?: string;
  status?: string;
  error?: string;
}

function BulkReport({ report }: { report: Report[] }) {
  if (report.length === 0) return <p>No run matched.</p>;
  return (
    <table className="grid small">
      <tbody>
        {report.map((r) => (
          <tr key={r.run}>
            <td className="mono">{r.run}</td>
            <td>{r.error ? <span className="err">{r.error}</span> : <>{r.replay && r.replay !== r.run ? <>→ <Link to={`/runs/${r.replay}`} className="mono">{r.replay}</Link> </> : null}<Status status={r.status ?? "pending"} /></>}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
